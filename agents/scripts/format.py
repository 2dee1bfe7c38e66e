"""Validate raw data and write training-ready splits for each training method.

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
  4. converts what is left to the rows each of `methods` trains on (SFT conversations, DPO
     pairs, KTO labels, GRPO prompts/groups), renders each through the model's chat template
     and measures its tokens against `max_length` (a long row fails the gate or is dropped:
     `on_too_long`);
  5. writes data/splits/train.jsonl and val.jsonl (for a chain of methods, the later methods
     get train-<method>.jsonl and val-<method>.jsonl), metrics/data-report.json and
     reports/data.md.

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
    from factory import atomic, datareport, records, splits
    from factory.hashing import hash_path
    from factory.project import Project
    from factory.runtime import models

    project = Project(root)
    split = cfg["split"]
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

    # 3-4. Bucket, convert for each method of the plan, measure tokens; rows are written as
    # they come. A chain (sft, then dpo, ...) gets one pair of split files per method.
    tokenizer = models.load_tokenizer(cfg["model"], root)
    targets = [MethodSplits(method, names, root / cfg["out_dir"])
               for method, names in splits.split_names(cfg["methods"]).items()]
    frozen_ids, frozen_keys = set(cfg["frozen_eval_ids"]), set(cfg["frozen_eval_keys"])
    stats = datareport.DataStats()
    counts = {"held_for_eval": 0, "too_long": [], "unrenderable": []}
    writers = [w for t in targets for w in t.out.values()] + [rejected]
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
            for target in targets:
                if target.add(example, name, cfg["label_threshold"]):
                    target.flush(name, tokenizer, cfg, stats, counts)
        for target in targets:
            target.finish(tokenizer, cfg, stats, counts)
        check(tally, counts, targets, cfg)
    except BaseException:
        for writer in writers:
            if writer is not None:
                writer.discard()
        raise

    # 5. Everything passed: put the splits in place and report.
    for writer in writers:
        if writer is not None:
            writer.commit()
    first = targets[0]
    hashes = {w.path.stem: hash_path(w.path) for t in targets for w in t.out.values()}
    report = datareport.build(
        tally, stats, method=first.method, frozen_eval=len(frozen_ids),
        splits={"train": first.out["train"].count, "val": first.out["val"].count,
                "held_for_eval": counts["held_for_eval"]},
        not_for_method=first.not_for_method, too_long=len(counts["too_long"]),
        max_length=cfg["model"]["max_length"],
        rejected_file=cfg["rejected_file"] if skip_bad else None, hashes=hashes,
        stages={t.method: {"train": t.out["train"].count, "val": t.out["val"].count,
                           "files": [w.path.name for w in t.out.values()],
                           "not_for_method": t.not_for_method} for t in targets})
    atomic.write_json(root / cfg["report_file"], report)
    atomic.write_text(root / cfg["summary_file"], datareport.markdown(report))
    print(datareport.summary_line(report))


class MethodSplits:
    """One method's train and val files, and the rows waiting to be measured and written."""

    def __init__(self, method: str, names: dict, out_dir):
        from factory import atomic

        self.method = method
        self.out = {split: atomic.StagedJsonl(out_dir / f"{file}.jsonl")
                    for split, file in names.items()}
        self.pending: dict[str, list[dict]] = {"train": [], "val": []}
        self.not_for_method: dict[str, int] = {}
        self.group_rewards: dict[str, float] = {}

    def add(self, example: dict, split: str, label_threshold: float) -> bool:
        """Queue the example's rows; True when the queue should be flushed now."""
        from factory import methods

        rows = methods.rows_for(example, self.method, label_threshold)
        if not rows:
            kind = example["kind"]
            self.not_for_method[kind] = self.not_for_method.get(kind, 0) + 1
            return False
        if self.method == "grpo" and example.get("reward") is not None:
            self.group_rewards[example["id"]] = example["reward"]
        self.pending[split] += rows
        # GRPO rows wait for the end: rewarded answers to one prompt become one group.
        return len(self.pending[split]) >= CHUNK and self.method != "grpo"

    def finish(self, tokenizer, cfg, stats, counts) -> None:
        from factory import methods

        for split in self.pending:
            if self.method == "grpo":
                self.pending[split] = methods.group_rewarded_chats(self.pending[split],
                                                                   self.group_rewards)
            self.flush(split, tokenizer, cfg, stats, counts)

    def flush(self, split, tokenizer, cfg, stats, counts) -> None:
        from factory.runtime import tokens

        rows, self.pending[split] = self.pending[split], []
        limit = cfg["model"]["max_length"]
        for row, length in zip(rows, tokens.lengths(tokenizer, rows, self.method)):
            if isinstance(length, str):
                counts["unrenderable"].append({"source": row["source"], "reason": length})
                continue
            stats.lengths.append(length)
            if length > limit:
                counts["too_long"].append({"source": row["source"], "tokens": length})
                if cfg["on_too_long"] == "drop":
                    continue
            self.out[split].write(row)


def check(tally, counts, targets, cfg) -> None:
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
    for target in targets:
        rows = target.out["train"].count
        if rows < cfg["min_train_records"]:
            unusable = target.not_for_method
            raise ScriptError("E_NO_DATA", f"{rows} training row(s) for {target.method}, fewer "
                                           f"than data.min_train_records="
                                           f"{cfg['min_train_records']}"
                              + (f"; not usable for {target.method}: {unusable}"
                                 if unusable else ""),
                              method=target.method, not_for_method=unusable)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="scripts/format.json")
    sys.exit(main(parser.parse_args().config))
