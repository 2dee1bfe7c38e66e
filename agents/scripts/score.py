"""Score a model on the frozen eval split, written by `factory run baseline` and `factory run evaluate`.

The baseline gate runs it on the base model; the evaluate gate on the candidate checkpoint (a LoRA
adapter, or a full model folder) loaded from disk in a fresh process, and on the model promoted last
when its stored scores are not for this eval split. Both copies are this same file, so every side of
every comparison uses the same template, truncation, greedy decoding and reward code. Re-run by hand
from the project directory with the copy and config of the gate you want:

    python scripts/baseline.py --config scripts/baseline.json
    python scripts/evaluate.py --config scripts/evaluate.json

For each entry of `runs`, writes the aggregate to its `metrics_file` and one line per eval example
(every metric, the answer and the reference) to its `examples_file`, so every aggregate can be
recomputed. The verdict itself is given by the factory, not by this script.
"""
import argparse
import json
import sys
import time

from factory.runtime.report import ScriptError, fail, load_config, project_root


def main(config_path: str) -> int:
    cfg = load_config(config_path)
    root = project_root(config_path)
    try:
        score(cfg, root)
    except ScriptError as error:
        return fail(root, cfg["gate"], error)
    return 0


def score(cfg: dict, root) -> None:
    from factory.rewards import RewardError, build

    with open(root / cfg["eval_file"], encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    try:
        # root: a learned or python reward reads its file from the project
        rewards = build(cfg["rewards"], root=root)
        for run in cfg["runs"]:
            score_one(cfg, run, records, rewards, root)
    except RewardError as exc:  # a reward that cannot be built or broke its contract
        raise ScriptError("E_REWARD", str(exc)) from exc


def score_one(cfg: dict, run: dict, records: list[dict], rewards: dict, root) -> None:
    import torch

    from factory import atomic
    from factory.runtime import models, scoring

    torch.manual_seed(cfg["seed"])
    model, tokenizer = models.load(cfg["model"], root, adapter=run.get("checkpoint"))
    shown = cfg["model"]["source"] + (f" + {run['checkpoint']}" if run.get("checkpoint") else "")
    print(f"[{run['label']}] scoring {len(records)} eval records with {shown}")

    started = time.monotonic()
    rows = scoring.score_examples(
        model, tokenizer, records, max_length=cfg["model"]["max_length"],
        max_new_tokens=cfg["max_new_tokens"], metrics=cfg["metrics"], rewards=rewards,
        on_progress=lambda done, total: print(f"[{run['label']}] scored {done}/{total}"))
    metrics = scoring.aggregate(rows, cfg["metrics"])
    metrics["seconds"] = round(time.monotonic() - started, 1)
    metrics["model"] = cfg["model"]["source"]
    metrics["checkpoint"] = run.get("checkpoint")

    atomic.write_jsonl(root / run["examples_file"], rows)
    atomic.write_json(root / run["metrics_file"], metrics)
    shown = ", ".join(f"{m} {metrics[m]:.4g}" for m in cfg["metrics"] if metrics[m] is not None)
    print(f"[{run['label']}] {shown}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    sys.exit(main(parser.parse_args().config))
