"""What the format gate saw: metrics/data-report.json and its human summary, reports/data.md.

Counts per file and format (and per environment, when records name one), rejected records with
their reasons, duplicates, the reward filter, a reward histogram, token-length percentiles and
role/turn statistics. `factory status` shows
the one-line summary; the JSON keeps everything a driver needs to decide what to fix.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from factory import envs

PERCENTILES = (50, 90, 95, 99)
BINS = 10


@dataclass
class DataStats:
    kinds: Counter = field(default_factory=Counter)
    roles: Counter = field(default_factory=Counter)
    turns: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    tool_calls: int = 0
    envs: Counter = field(default_factory=Counter)

    def add(self, example: dict) -> None:
        self.kinds[example["kind"]] += 1
        self.envs[envs.name(example.get("env"))] += 1
        messages = example["messages"]
        self.turns.append(len(messages))
        for message in messages:
            self.roles[message["role"]] += 1
            self.tool_calls += len(message.get("tool_calls", ()))
            if "<start_function_call>" in message["content"]:
                self.tool_calls += message["content"].count("<start_function_call>")
        if example.get("reward") is not None:
            self.rewards.append(float(example["reward"]))


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    out = {f"p{p}": ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]
           for p in PERCENTILES}
    out.update(min=ordered[0], max=ordered[-1], mean=round(sum(ordered) / len(ordered), 3))
    return out


def histogram(values: list[float], bins: int = BINS) -> list[dict]:
    if not values:
        return []
    low, high = min(values), max(values)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return [{"from": round(low + i * width, 4), "to": round(low + (i + 1) * width, 4),
             "count": c} for i, c in enumerate(counts)]


def build(tally, stats: DataStats, *, method: str, splits: dict, frozen_eval: int,
          not_for_method: dict, too_long: int, max_length: int, rejected_file: str | None,
          hashes: dict, stages: dict | None = None) -> dict:
    files = [{"file": name, **vars(t)} for name, t in tally.files.items()]
    return {
        "method": method,
        "methods": list(stages or [method]),
        "stages": stages or {},
        "files": files,
        "formats": _valid_by_format(files),
        "records": tally.total("records"),
        "valid": tally.total("valid"),
        "bad": tally.bad,
        "duplicates": tally.total("duplicates"),
        "below_min_reward": tally.total("below_min_reward"),
        "not_for_method": not_for_method,
        "too_long": too_long,
        "rejected_file": rejected_file,
        "rejected_reasons": dict(tally.reasons.most_common(20)),
        "problems": [p.to_dict() for p in tally.problems],
        "notes": tally.notes,
        "kinds": dict(stats.kinds),
        # valid records per environment (evaluation judges each; see docs/evaluation.md)
        "environments": dict(sorted(stats.envs.items())),
        "splits": splits,
        "frozen_eval": frozen_eval,
        "hashes": hashes,
        "reward": {**percentiles(stats.rewards), "count": len(stats.rewards),
                   "histogram": histogram(stats.rewards)},
        "tokens": {**percentiles(stats.lengths), "limit": max_length},
        "turns": percentiles(stats.turns),
        "roles": dict(stats.roles),
        "tool_calls": stats.tool_calls,
    }


def _valid_by_format(files: list[dict]) -> dict:
    counts: Counter = Counter()
    for f in files:
        counts[f["format"]] += f["valid"]
    return dict(counts)


def summary_line(report: dict) -> str:
    """One line for `factory status`."""
    parts = [f"{report['valid']} valid of {report['records']}"]
    for key, label in (("bad", "rejected"), ("duplicates", "duplicates"),
                       ("below_min_reward", "below min_reward"), ("too_long", "too long")):
        if report.get(key):
            parts.append(f"{report[key]} {label}")
    splits = report.get("splits", {})
    stages = report.get("stages") or {report["method"]: splits}
    parts.append(", then ".join(f"train {n.get('train', 0)} / val {n.get('val', 0)} ({method})"
                                for method, n in stages.items()))
    tokens = report.get("tokens", {})
    if "p95" in tokens:
        parts.append(f"tokens p50 {tokens['p50']} p95 {tokens['p95']} max {tokens['max']} "
                     f"(limit {tokens['limit']})")
    return ", ".join(parts)


def markdown(report: dict) -> str:
    lines = ["# Data report", "", summary_line(report), "",
             "| file | format | records | valid | rejected | duplicates | below min_reward |",
             "|---|---|---|---|---|---|---|"]
    for f in report["files"]:
        name = f["file"] + (f" ({f['dataset']})" if f.get("dataset") else "")
        lines.append(f"| {name} | {f['format']} | {f['records']} | {f['valid']} | {f['bad']} | "
                     f"{f['duplicates']} | {f['below_min_reward']} |")
    lines += ["", "## Splits", ""]
    lines += [f"- {name}: {count}" for name, count in report["splits"].items()]
    lines.append(f"- frozen eval (chosen by the baseline gate): {report['frozen_eval']}")
    stages = report.get("stages") or {report["method"]: {
        "not_for_method": report["not_for_method"]}}
    if len(stages) > 1:
        lines += ["", "## Stages", "", "| method | train | val | files |", "|---|---|---|---|"]
        lines += [f"| {m} | {n['train']} | {n['val']} | {', '.join(n['files'])} |"
                  for m, n in stages.items()]
    for method, n in stages.items():
        if n["not_for_method"]:
            lines += ["", f"## Not usable for {method}", ""]
            lines += [f"- {kind}: {count}" for kind, count in n["not_for_method"].items()]
    if report["rejected_reasons"]:
        lines += ["", "## Rejected, by reason", ""]
        lines += [f"- {n} × {reason}" for reason, n in report["rejected_reasons"].items()]
        lines += ["", "First problems:", ""]
        lines += [f"- `{_where(p)}` {p['field']}: expected {p['expected']}, found {p['found']}"
                  for p in report["problems"][:10]]
    if set(report.get("environments") or {}) - {envs.DEFAULT}:
        lines += ["", "## Environments", ""]
        lines += [f"- {env}: {n}" for env, n in report["environments"].items()]
    lines += _distribution("Token lengths", report["tokens"])
    lines += _distribution("Turns per record", report["turns"])
    if report["reward"].get("count"):
        lines += _distribution("Rewards", report["reward"])
        lines += ["", "| from | to | records |", "|---|---|---|"]
        lines += [f"| {b['from']} | {b['to']} | {b['count']} |"
                  for b in report["reward"]["histogram"]]
    roles = ", ".join(f"{role} {n}" for role, n in report["roles"].items())
    lines += ["", "## Roles", "", f"{roles}; tool calls {report['tool_calls']}"]
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def _distribution(title: str, values: dict) -> list[str]:
    keys = [k for k in ("min", "p50", "p90", "p95", "p99", "max", "mean", "limit") if k in values]
    if not keys:
        return []
    return ["", f"## {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
            "| " + " | ".join(str(values[k]) for k in keys) + " |"]


def _where(problem: dict) -> str:
    if "line" in problem:
        return f"{problem['file']}:{problem['line']}"
    return f"{problem['file']}[{problem['index']}]"
