"""The verdict per environment: every metric compared within each environment of the eval split,
and whether the candidate Pareto-dominates the model it is compared with across them.

An environment's outcome is read from its primary-metric comparison (factory.stats.significance):
better or worse when the interval of the improvement excludes zero (the Beta credible interval of
the difference for pass/fail metrics, the paired bootstrap interval otherwise, both at
eval.confidence), unclear otherwise. The candidate dominates when no environment is worse and at
least one is better; with eval.require_dominance the verdict passes only then. A project without
environments has one, `default`, whose figures are the overall ones.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from factory import envs, stats

# (base rows, candidate rows) -> {metric: comparison}, as evaluate.compare_all gives them
CompareAll = Callable[[dict[str, dict], dict[str, dict]], dict[str, dict]]


def of_split(path: Path) -> dict[str, str]:
    """Each frozen eval example's environment (by id), read from the split itself: it, not a
    score file, is what every side was scored on."""
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return {row["id"]: envs.name(envs.of_row(row)) for row in rows}


def named(environments: dict) -> bool:
    """Whether the data names environments at all (else there is only the implicit one)."""
    return set(environments) != {envs.DEFAULT}


def per_env(base: dict[str, dict], cand: dict[str, dict], env_of: dict[str, str],
            compare_all: CompareAll, primary: str, overall: dict[str, dict]) -> dict[str, dict]:
    """{env: {n, outcome, difference, interval, metrics}} over the examples both sides scored.

    `overall` is the comparison over every example: with a single environment it is that
    environment's (the same examples, order and seed), so it is reused, not recomputed.
    """
    groups = envs.group(env_of, sorted(cand))
    if len(groups) == 1:
        ((env, ids),) = groups.items()
        return {env: _entry(len(ids), overall, primary)}
    return {env: _entry(len(ids), compare_all({i: base[i] for i in ids},
                                              {i: cand[i] for i in ids}), primary)
            for env, ids in groups.items()}


def _entry(n: int, metrics: dict[str, dict], primary: str) -> dict:
    p = metrics[primary]
    interval, basis = stats.difference_interval(p) if p.get("n") else (None, None)
    return {"n": n, "outcome": stats.significance(p), "difference": interval, "interval": basis,
            "metrics": metrics}


def dominance(environments: dict[str, dict], primary: str, required: bool) -> dict:
    """The Pareto check across environments, on the primary metric."""
    outcomes = {env: e["outcome"] for env, e in environments.items()}
    return {"metric": primary, "required": required, **stats.dominance(outcomes)}


def decide(dom: dict, environments: dict[str, dict], passed: bool,
           reason: str) -> tuple[bool, str]:
    """The verdict after the dominance rule: only a required one that fails changes it, and
    only a verdict that passed so far (an earlier rule's reason is the one to fix first)."""
    if not (passed and dom["required"] and not dom["dominates"]):
        return passed, reason
    return False, reason.removesuffix(" passes") + ", but " + shortfall(dom, environments)


def shortfall(dom: dict, environments: dict[str, dict]) -> str:
    """Why the candidate does not dominate, naming the environments it is worse in."""
    metric = dom["metric"]
    if dom["worse"]:
        shown = ", ".join(_shown(env, environments[env]["metrics"][metric]) for env in dom["worse"])
        return (f"it does not dominate across environments: {metric} is significantly worse in "
                f"{shown}")
    return (f"it does not dominate across environments: {metric} is significantly better in "
            f"none of {len(environments)} (unclear in {', '.join(dom['unclear'])})")


def _shown(env: str, c: dict) -> str:
    (low, high), _ = stats.difference_interval(c)
    return (f"{env} ({c['baseline']:.4g} → {c['candidate']:.4g}, interval "
            f"[{low:+.4g}, {high:+.4g}], n={c['n']})")
