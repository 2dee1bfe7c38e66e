"""Score a model on the frozen eval split, written by `factory run baseline` and `factory run evaluate`.

The baseline gate runs it on the base model, the evaluate gate on the base model plus the candidate
adapter, loaded from disk in a fresh process. Both copies are this same file, so both sides of every
comparison use the same template, truncation and greedy decoding. Re-run by hand from the project
directory with the copy and config of the gate you want:

    python scripts/baseline.py --config scripts/baseline.json
    python scripts/evaluate.py --config scripts/evaluate.json

Writes the aggregate to `metrics_file` and one line per eval example to `examples_file`, so every
aggregate can be recomputed. The verdict itself is given by the factory, not by this script.
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
    import torch

    from factory import atomic
    from factory.runtime import models, scoring

    torch.manual_seed(cfg["seed"])
    model, tokenizer = models.load(cfg["model"], root, adapter=cfg.get("adapter"))
    with open(root / cfg["eval_file"], encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    print(f"scoring {len(records)} eval records with {cfg['model']['source']}"
          f"{' + ' + cfg['adapter'] if cfg.get('adapter') else ''}")

    started = time.monotonic()
    rows = scoring.score_examples(
        model, tokenizer, records, max_length=cfg["model"]["max_length"],
        max_new_tokens=cfg["max_new_tokens"],
        on_progress=lambda done, total: print(f"scored {done}/{total}"))
    metrics = scoring.aggregate(rows)
    metrics["seconds"] = round(time.monotonic() - started, 1)
    metrics["model"] = cfg["model"]["source"]
    metrics["adapter"] = cfg.get("adapter")

    atomic.write_jsonl(root / cfg["examples_file"], rows)
    atomic.write_json(root / cfg["metrics_file"], metrics)
    print(f"exact_match {metrics['exact_match']:.3f}, loss {metrics['loss']:.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    sys.exit(main(parser.parse_args().config))
