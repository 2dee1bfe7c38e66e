"""How fast the commands a coding assistant calls in a loop answer, against importing torch.

Target: `status`, `next`, `log`, `promote --list` and `init` answer in at most 150 ms and never
import torch. Each command runs as a user runs it (the `factory` console script, a fresh process)
on a project whose baseline and format gates have passed, so `status` has real content hashes to
check. "warm" is the usual case: nothing changed since the last answer, so the remembered one is
reused (factory/status_cache.py). "cold" is the first answer after a change (data, config, a
gate finishing): the config is validated and every input re-hashed (file hashes still come from
the hash cache).

    python bench/cli_latency.py [PROJECT]     # default: builds a demo project (about a minute)
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 150.0
RUNS = 15
BIN = Path(sys.executable).parent
FACTORY = str(BIN / "factory")


def timed(argv: list[str], before=None) -> float:
    if before:
        before()
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def sample(argv: list[str], runs: int = RUNS, before=None) -> list[float]:
    timed(argv, before)  # page the interpreter and our modules into the OS cache
    return [timed(argv, before) for _ in range(runs)]


def demo_project(workdir: Path) -> Path:
    project = workdir / "demo"
    for args in (["demo", str(project)], ["-C", str(project), "run", "baseline"],
                 ["-C", str(project), "run", "format"]):
        subprocess.run([FACTORY, *args, "-q", "--json"], check=True, stdout=subprocess.DEVNULL)
    return project


def row(name: str, ms: list[float], torch_ms: float | None) -> str:
    median, worst = statistics.median(ms), max(ms)
    ratio = f"{torch_ms / median:6.1f}x" if torch_ms else "     -"
    verdict = "ok" if median <= TARGET_MS else "OVER"
    return f"{name:<24} {median:8.1f} {worst:8.1f}   {ratio}   {verdict}"


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="cli-latency-"))
    try:
        project = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else demo_project(workdir)
        cache = project / ".factory" / "cache"
        on = ["-C", str(project)]
        torch_ms = statistics.median(sample([sys.executable, "-c", "import torch"], runs=3))
        floor = sample([sys.executable, "-c", "pass"])
        print(f"project {project}\n{'command':<24} {'median':>8} {'max':>8}   vs torch   "
              f"target {TARGET_MS:.0f} ms")
        print(row("python -c pass", floor, torch_ms))
        print(row("python -c 'import torch'", [torch_ms], None))
        results = {}
        for name, args in [("status", ["status"]), ("next", ["next"]), ("log", ["log"]),
                           ("promote --list", ["promote", "--list"])]:
            results[name] = sample([FACTORY, *on, *args, "--json"])
            print(row(name + " (warm)", results[name], torch_ms))
        results["init"] = [timed([FACTORY, "init", str(workdir / f"new-{i}"), "--json"])
                           for i in range(RUNS)]
        print(row("init", results["init"], torch_ms))
        cold = sample([FACTORY, *on, "status", "--json"],
                      before=lambda: shutil.rmtree(cache, ignore_errors=True))
        print(row("status (cold)", cold, torch_ms) + "   (first answer after a change)")
        over = [n for n, ms in results.items() if statistics.median(ms) > TARGET_MS]
        print("every loop command within target" if not over else f"over target: {over}")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
