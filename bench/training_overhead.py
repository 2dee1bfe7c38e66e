"""What `factory run finetune` costs on top of the training itself.

The same SFT steps on the tiny demo model, as whole processes, timed from start to exit:

  factory   `factory -C PROJECT run finetune --force`: config validation, content hashes, the
            pre-training checklist, the generated script in a fresh process, live status,
            checkpoints, stats, the training plot and the state record;
  plain     `python bench/plain_sft.py`: the same run written by hand with TRL + PEFT.

Runs alternate (factory, plain, factory, ...) so that a slower moment of a shared machine hits
both alike; the figure is the ratio of the medians. Target: at most 1.03.

    python bench/training_overhead.py [--steps 200] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.03
BIN = Path(sys.executable).parent
FACTORY = str(BIN / "factory")
PLAIN = str(Path(__file__).with_name("plain_sft.py"))


# The environment factory gives its scripts (agents/runner.py), given to the plain script too:
# with tokenizer threads on, two cores spend the run fighting over them, and the comparison
# would measure that instead of factory's own cost.
ENV = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def run(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=ENV)
    return time.perf_counter() - t0


def prepare(root: Path, steps: int) -> Path:
    project = root / "demo"
    subprocess.run([FACTORY, "demo", str(project), "-q", "--json"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = project / "training-config.json"
    cfg = json.loads(path.read_text())
    # Checkpoints on the same schedule in both (the plain script passes save_steps through).
    cfg["training"].update(max_steps=steps, save_steps=max(1, steps // 2), logging_steps=5)
    path.write_text(json.dumps(cfg, indent=2))
    for gate in ("baseline", "format"):
        subprocess.run([FACTORY, "-C", str(project), "run", gate, "-q", "--json"], check=True,
                       stdout=subprocess.DEVNULL)
    return project


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="train-overhead-") as tmp:
        project = prepare(Path(tmp), args.steps)
        out = Path(tmp) / "plain"
        factory_cmd = [FACTORY, "-C", str(project), "run", "finetune", "--force", "-q", "--json"]
        times: dict[str, list[float]] = {"factory": [], "plain": []}
        run([sys.executable, PLAIN, str(project), str(out)])  # warm the OS file cache
        for _ in range(args.runs):
            shutil.rmtree(project / "models" / "runs", ignore_errors=True)
            times["factory"].append(run(factory_cmd))
            shutil.rmtree(out, ignore_errors=True)
            times["plain"].append(run([sys.executable, PLAIN, str(project), str(out)]))
        stats = json.loads((project / "metrics" / "training-stats.json").read_text())
    f, p = (statistics.median(times[k]) for k in ("factory", "plain"))
    print(f"SFT, {stats['total_steps']} steps on the tiny demo model, {args.runs} runs each, "
          f"whole-process wall time")
    print(f"{'path':<10}{'median s':>10}{'runs':>28}")
    for name in ("factory", "plain"):
        shown = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:<10}{statistics.median(times[name]):>10.2f}{shown:>28}")
    ratio = f / p
    verdict = "ok" if ratio <= TARGET else "OVER"
    print(f"ratio factory/plain {ratio:.3f} (target <= {TARGET}): {verdict}; "
          f"overhead {f - p:+.2f} s")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
