"""Validate raw data and write the train and val splits, written by `factory run format`.

Re-run by hand from the project directory:

    python scripts/format.py --config scripts/format.json

Reads every .jsonl/.json file under `raw_dir`, checks each record against its JSON Schema
(schemas/messages.schema.json, schemas/sharegpt.schema.json), normalises it to chat messages and
drops exact duplicates. Each record's split is decided by a hash of its own content, so adding data
never moves an old record. Records that hash into the eval bucket are never trained on: the eval
split was frozen by the baseline gate, and new eval-bucket records wait for the next re-freeze.

With on_error "fail" (the default) any bad record stops the gate and no split is written; with
"skip" bad records go to data/rejected.jsonl with their reasons.
"""
import argparse
import sys
from collections import Counter

from factory.runtime.report import ScriptError, fail, load_config, project_root


def main(config_path: str) -> int:
    cfg = load_config(config_path)
    root = project_root(config_path)
    try:
        build(cfg, root)
    except ScriptError as error:
        return fail(root, "format", error)
    return 0


def build(cfg: dict, root) -> None:
    from factory import atomic, records, splits

    skip = cfg["on_error"] == "skip"
    result = records.read_raw(root / cfg["raw_dir"], root, cfg["format"], skip_bad=skip)
    print(f"read {len(result.files)} file(s): {len(result.records)} valid records, "
          f"{result.bad_count} bad, {result.duplicates} duplicates")
    if result.bad_count and not skip:
        shown = "; ".join(str(p) for p in result.problems[:3])
        raise ScriptError("E_SCHEMA", f"{result.bad_count} bad record(s): {shown}",
                          problems=[p.to_dict() for p in result.problems],
                          bad_count=result.bad_count)

    frozen_ids = set(cfg["frozen_eval_ids"])
    split = cfg["split"]
    buckets = {"train": [], "val": [], "held_for_eval": []}
    for record in result.records:
        if record["id"] in frozen_ids:
            continue
        name = splits.bucket(record["id"], split["salt"], split["val"], split["eval"])
        buckets["held_for_eval" if name == "eval" else name].append(record)
    if not buckets["train"]:
        raise ScriptError("E_NO_DATA", "no training records are left after validation")

    hashes = {name: splits.write_split(root / cfg["out_dir"] / f"{name}.jsonl", buckets[name])
              for name in ("train", "val")}
    if skip:
        atomic.write_jsonl(root / cfg["rejected_file"], result.rejected)
    report = {
        "files": result.files,
        "valid": len(result.records),
        "bad": result.bad_count,
        "duplicates": result.duplicates,
        "problems": [p.to_dict() for p in result.problems],
        "splits": {name: len(rows) for name, rows in buckets.items()},
        "frozen_eval": len(frozen_ids),
        "hashes": hashes,
        "roles": dict(Counter(m["role"] for r in result.records for m in r["messages"])),
    }
    atomic.write_json(root / cfg["report_file"], report)
    print(f"train {len(buckets['train'])}, val {len(buckets['val'])}, "
          f"held for the next eval freeze {len(buckets['held_for_eval'])}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="scripts/format.json")
    sys.exit(main(parser.parse_args().config))
