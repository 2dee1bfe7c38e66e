"""Validate raw data and write training-ready splits for the chosen method, written by `factory run format`.

Re-run by hand from the project directory:

    python scripts/format.py --config scripts/format.json

What it does, in order:
  1. reads every file under `raw_dir` (.jsonl, .json, .parquet, .csv, and folders described by a
     LLaMA-Factory dataset_info.json), one record at a time, detecting each file's format from
     its first record; validates every record against its format (schemas/*.schema.json) and
     normalises it to one example shape;
  2. drops exact duplicates and, with `min_reward` set, records rewarded below it;
  3. puts each record in train, val or eval by a hash of its prompt. Eval was frozen by the
     baseline gate: a frozen record is skipped, a new eval-bucket record waits for a re-freeze;
  4. converts what is left to the rows `method` trains on (SFT conversations, DPO pairs, KTO
     labels, GRPO prompts/groups), renders each through the model's chat template and measures
     its tokens against `max_length` (a long row fails the gate or is dropped: `on_too_long`);
  5. writes data/splits/train.jsonl and val.jsonl, metrics/data-report.json and reports/data.md.

Nothing is written to data/splits/ unless every step passed: with on_error "fail" (the default)
one bad record stops the gate; with "skip" bad records go to data/rejected.jsonl with reasons.
Raises (as .factory/logs/format.error.json): E_SCHEMA, E_TOO_MANY_REJECTED, E_TOO_LONG, E_NO_DATA.
"""
import argparse
import sys

from factory.runtime.report import ScriptError, fail, load_config, project_root

CHUNK = 512


def main(config_path: str) -> int:
    cfg = load_config(config_path)
    root = project_root(config_path)
    try:
        build(cfg, root)
    except ScriptError as error:
        return fail(root, "format", error)
    return 0


def build(cfg: dict, root) -> None:
    from factory import atomic, datareport, methods, records, splits
    from factory.hashing import hash_path
    from factory.project import Project
    from factory.runtime import models

    project = Project(root)
    method, split = cfg["method"], cfg["split"]
    skip_bad = cfg["on_error"] == "skip"

    # 1-2. Read and validate, streaming (bad records are quarantined or stop the gate), then
    # dedup and the reward filter.
    tally = records.Tally()
    rejected = atomic.StagedJsonl(root / cfg["rejected_file"]) if skip_bad else None

    def quarantine(file, pos, record, problems):
        if rejected is not None:
            rejected.write({"file": file, "pos": pos, "record": record,
                            "problems": [p.to_dict() for p in problems]})

    examples = records.pool(root / cfg["raw_dir"], project, cfg, tally, quarantine)

    # 3-4. Bucket, convert for the method, measure tokens; rows are written as they come.
    tokenizer = models.load_tokenizer(cfg["model"], root)
    out = {name: atomic.StagedJsonl(root / cfg["out_dir"] / f"{name}.jsonl")
           for name in ("train", "val")}
    frozen_ids, frozen_keys = set(cfg["frozen_eval_ids"]), set(cfg["frozen_eval_keys"])
    stats = datareport.DataStats()
    counts = {"held_for_eval": 0, "not_for_method": {}, "too_long": [], "unrenderable": []}
    grpo_rewards: dict[str, float] = {}
    pending: dict[str, list[dict]] = {"train": [], "val": []}
    try:
        for example in examples:
            stats.add(example)
            if tally.bad and not skip_bad:
                continue  # the gate will fail; keep reading only to report every bad record
            if example["id"] in frozen_ids or example["key"] in frozen_keys:
                continue
            name = splits.bucket(example["key"], split["salt"], split["val"], split["eval"])
            if name == "eval":
                counts["held_for_eval"] += 1
                continue
            rows = methods.rows_for(example, method, cfg["label_threshold"])
            if not rows:
                kinds = counts["not_for_method"]
                kinds[example["kind"]] = kinds.get(example["kind"], 0) + 1
                continue
            if method == "grpo" and example.get("reward") is not None:
                grpo_rewards[example["id"]] = example["reward"]
            pending[name] += rows
            if len(pending[name]) >= CHUNK and method != "grpo":
                flush(pending, name, out, tokenizer, method, cfg, stats, counts)
        if method == "grpo":  # rewarded answers to one prompt become one group
            for name in pending:
                pending[name] = methods.group_rewarded_chats(pending[name], grpo_rewards)
        for name in pending:
            flush(pending, name, out, tokenizer, method, cfg, stats, counts)
        check(tally, counts, out, cfg)
    except BaseException:
        for writer in (*out.values(), rejected):
            if writer is not None:
                writer.discard()
        raise

    # 5. Everything passed: put the splits in place and report.
    for writer in (*out.values(), rejected):
        if writer is not None:
            writer.commit()
    hashes = {name: hash_path(root / cfg["out_dir"] / f"{name}.jsonl") for name in out}
    report = datareport.build(
        tally, stats, method=method, frozen_eval=len(frozen_ids),
        splits={"train": out["train"].count, "val": out["val"].count,
                "held_for_eval": counts["held_for_eval"]},
        not_for_method=counts["not_for_method"], too_long=len(counts["too_long"]),
        max_length=cfg["model"]["max_length"],
        rejected_file=cfg["rejected_file"] if skip_bad else None, hashes=hashes)
    atomic.write_json(root / cfg["report_file"], report)
    atomic.write_text(root / cfg["summary_file"], datareport.markdown(report))
    print(datareport.summary_line(report))


def flush(pending, name, out, tokenizer, method, cfg, stats, counts) -> None:
    from factory.runtime import tokens

    rows, pending[name] = pending[name], []
    limit = cfg["model"]["max_length"]
    for row, length in zip(rows, tokens.lengths(tokenizer, rows, method)):
        if isinstance(length, str):
            counts["unrenderable"].append({"source": row["source"], "reason": length})
            continue
        stats.lengths.append(length)
        if length > limit:
            counts["too_long"].append({"source": row["source"], "tokens": length})
            if cfg["on_too_long"] == "drop":
                continue
        out[name].write(row)


def check(tally, counts, out, cfg) -> None:
    """Every reason to refuse, most fundamental first."""
    if tally.bad and cfg["on_error"] == "fail":
        shown = "; ".join(str(p) for p in tally.problems[:3])
        raise ScriptError("E_SCHEMA", f"{tally.bad} bad record(s): {shown}",
                          problems=[p.to_dict() for p in tally.problems], bad_count=tally.bad,
                          reasons=dict(tally.reasons.most_common(20)))
    records_seen = tally.total("records")
    if records_seen and tally.bad / records_seen > cfg["max_rejected_share"]:
        raise ScriptError("E_TOO_MANY_REJECTED",
                          f"{tally.bad} of {records_seen} records were rejected, more than "
                          f"data.max_rejected_share={cfg['max_rejected_share']}",
                          problems=[p.to_dict() for p in tally.problems],
                          reasons=dict(tally.reasons.most_common(20)))
    if counts["unrenderable"]:
        first = counts["unrenderable"][0]
        raise ScriptError("E_SCHEMA", f"{len(counts['unrenderable'])} record(s) cannot be "
                                      f"rendered by the model's chat template, e.g. "
                                      f"{first['source']}: {first['reason']}",
                          records=counts["unrenderable"][:50])
    if counts["too_long"] and cfg["on_too_long"] == "fail":
        first = counts["too_long"][0]
        raise ScriptError("E_TOO_LONG", f"{len(counts['too_long'])} record(s) exceed "
                                        f"model.max_length={cfg['model']['max_length']} tokens, "
                                        f"e.g. {first['source']} ({first['tokens']} tokens)",
                          records=counts["too_long"][:50])
    if out["train"].count < cfg["min_train_records"]:
        unusable = counts["not_for_method"]
        raise ScriptError("E_NO_DATA", f"{out['train'].count} training row(s) for "
                                       f"{cfg['method']}, fewer than data.min_train_records="
                                       f"{cfg['min_train_records']}"
                          + (f"; not usable for {cfg['method']}: {unusable}" if unusable else ""),
                          not_for_method=unusable)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="scripts/format.json")
    sys.exit(main(parser.parse_args().config))
