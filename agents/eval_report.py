"""The evaluate gate's report for people: reports/eval.md and a plot of every metric's improvement.

Everything here is read from the verdict and the per-example files; nothing is decided here.
"""
from __future__ import annotations

import io

from factory import atomic
from factory.envs import DEFAULT as DEFAULT_ENV
from factory.hashing import short
from factory.project import Project

REPORT = "reports/eval.md"
PLOT = "reports/eval-deltas.png"
SHOWN_LOSSES = 5


def write(project: Project, verdict: dict, base: dict[str, dict], cand: dict[str, dict]) -> None:
    atomic.write_bytes(project.root / PLOT, plot(verdict))
    atomic.write_text(project.root / REPORT, markdown(verdict, base, cand))


def markdown(verdict: dict, base: dict[str, dict], cand: dict[str, dict]) -> str:
    primary = verdict["primary_metric"]
    lines = [f"# Evaluation: {'PASSED' if verdict['passed'] else 'FAILED'}", "",
             verdict["reason"] + ".", "",
             f"Checkpoint `{short(verdict['checkpoint_hash'])}`, frozen eval split "
             f"`{short(verdict['eval_split_hash'])}` ({len(cand)} examples), baseline scores "
             f"`{short(verdict['baseline_hash'])}`, judged {verdict['judged_at']}. Primary "
             f"metric `{primary}`, min_delta {verdict['min_delta']}, guards "
             f"{verdict['guards'] or 'none'}.", "",
             "## Against the base model", ""]
    lines += table(verdict["metrics"], verdict["confidence"], "base")
    lines += credible(verdict["metrics"])
    lines += per_environment(verdict)
    promoted = verdict.get("promoted")
    if promoted:
        lines += ["", f"## Against promoted {promoted['id']} (policy: {promoted['policy']})", ""]
        if "skipped" in promoted:
            lines.append(f"Not compared: {promoted['skipped']}.")
        else:
            lines += [promoted["reason"][:1].upper() + promoted["reason"][1:] + ".", ""]
            lines += table(promoted["metrics"], verdict["confidence"], "promoted")
    lines += ["", f"## Where the candidate lost to the base model on {primary}", ""]
    lines += lost(primary, verdict["metrics"][primary], base, cand)
    lines += ["", f"![improvement of each metric with its interval]({PLOT.split('/')[-1]})", "",
              "Per-example scores: `metrics/baseline-examples.jsonl`, "
              "`metrics/eval-examples.jsonl`; the verdict: `metrics/verdict.json`.", ""]
    return "\n".join(lines)


def table(metrics: dict, confidence: float, other: str) -> list[str]:
    rows = [f"| metric | n | {other} | candidate | improvement | {confidence:.0%} CI | "
            "wins / losses / ties | sign p | Wilcoxon p |",
            "|---|---:|---:|---:|---:|---|---|---:|---:|"]
    for metric, c in metrics.items():
        if not c.get("n"):
            rows.append(f"| {metric} | 0 | – | – | – | not applicable | – | – | – |")
            continue
        arrow = "" if c["higher_is_better"] else " (lower is better)"
        rows.append(f"| {metric}{arrow} | {c['n']} | {c['baseline']:.4g} | {c['candidate']:.4g}"
                    f" | {c['improvement']:+.4g} | [{c['ci_low']:+.4g}, {c['ci_high']:+.4g}] | "
                    f"{c['wins']} / {c['losses']} / {c['ties']} | {c['p_sign']:.2g} | "
                    f"{c['p_wilcoxon']:.2g} |")
    return rows


def credible(metrics: dict) -> list[str]:
    rated = {m: c["bayes"] for m, c in metrics.items() if c.get("bayes")}
    if not rated:
        return []
    lines = ["", "Pass rates, Beta(1 + passes, 1 + fails) posterior mean [credible interval]:", ""]
    for metric, b in rated.items():
        lines.append(f"- {metric}: base {_rate(b['baseline'])}, candidate "
                     f"{_rate(b['candidate'])}; difference [{b['difference'][0]:+.3f}, "
                     f"{b['difference'][1]:+.3f}], P(candidate better) "
                     f"{b['p_candidate_better']:.3f}")
    return lines


def per_environment(verdict: dict) -> list[str]:
    """The primary metric in each environment, the dominance check, then every metric's means.

    Nothing for data without environments: its one implicit environment is the table above."""
    environments = verdict.get("environments") or {}
    if set(environments) <= {DEFAULT_ENV}:
        return []
    primary, dom = verdict["primary_metric"], verdict["dominance"]
    promoted = (verdict.get("promoted") or {}).get("environments") or {}
    lines = ["", "## Per environment", "",
             f"`{primary}` in each environment. An environment is better or worse when the "
             f"{verdict['confidence']:.0%} interval of the improvement excludes zero (the Beta "
             "credible interval of the difference for pass/fail metrics, else the paired "
             "bootstrap interval).", "",
             "| environment | n | base | candidate | " + ("promoted | " if promoted else "")
             + "improvement | interval | outcome |",
             "|---|---:|---:|---:|" + ("---:|" if promoted else "") + "---:|---|---|"]
    for env, e in environments.items():
        c = e["metrics"][primary]
        if not c.get("n"):
            lines.append(f"| {_cell(env)} | {e['n']} | – | – | " + ("– | " if promoted else "")
                         + "– | not applicable | unclear |")
            continue
        shown = _promoted_mean(promoted.get(env), primary)
        low, high = e["difference"]
        lines.append(f"| {_cell(env)} | {e['n']} | {c['baseline']:.4g} | {c['candidate']:.4g} | "
                     + (f"{shown} | " if promoted else "")
                     + f"{c['improvement']:+.4g} | [{low:+.4g}, {high:+.4g}] ({e['interval']}) | "
                       f"{e['outcome']} |")
    verdict_line = "dominates" if dom["dominates"] else "does not dominate"
    lines += ["", f"The candidate **{verdict_line}** the base model across environments "
                  f"(better: {', '.join(dom['better']) or 'none'}; worse: "
                  f"{', '.join(dom['worse']) or 'none'}; unclear: "
                  f"{', '.join(dom['unclear']) or 'none'})"
                  + ("; the verdict requires it." if dom["required"] else
                     "; `eval.require_dominance` is off, so this does not decide the verdict."),
              "", "Every metric per environment (base → candidate, improvement):", "",
              "| environment | " + " | ".join(verdict["metrics"]) + " |",
              "|---|" + "---|" * len(verdict["metrics"])]
    for env, e in environments.items():
        cells = [f"{c['baseline']:.3g} → {c['candidate']:.3g} ({c['improvement']:+.3g})"
                 if c.get("n") else "–" for c in e["metrics"].values()]
        lines.append(f"| {_cell(env)} | " + " | ".join(cells) + " |")
    return lines


def _promoted_mean(entry: dict | None, primary: str) -> str:
    # The promoted comparison has the promoted model on its "baseline" side.
    c = (entry or {}).get("metrics", {}).get(primary) or {}
    return f"{c['baseline']:.4g}" if c.get("n") else "–"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _rate(interval: list[float]) -> str:
    return f"{interval[0]:.3f} [{interval[1]:.3f}, {interval[2]:.3f}]"


def lost(primary: str, comparison: dict, base: dict[str, dict], cand: dict[str, dict]) -> list[str]:
    if not comparison.get("n"):
        return ["Not applicable."]
    sign = 1 if comparison["higher_is_better"] else -1
    losses = [i for i in sorted(base) if base[i].get(primary) is not None
              and cand[i].get(primary) is not None
              and sign * (cand[i][primary] - base[i][primary]) < 0]
    if not losses:
        return ["None."]
    lines = [f"{len(losses)} example(s); the first {min(len(losses), SHOWN_LOSSES)}:", ""]
    for i in losses[:SHOWN_LOSSES]:
        env = f", env {cand[i]['env']}" if cand[i].get("env") is not None else ""
        lines += [f"- `{i}` ({cand[i].get('source') or 'eval'}{env})",
                  f"  - reference: `{_clip(cand[i].get('reference', ''))}`",
                  f"  - base: `{_clip(base[i].get('prediction', ''))}`",
                  f"  - candidate: `{_clip(cand[i].get('prediction', ''))}`"]
    return lines


def _clip(text: str, width: int = 160) -> str:
    flat = " ".join(str(text).split()).replace("`", "'")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def plot(verdict: dict) -> bytes:
    """One panel per metric: the improvement (positive = better) and its interval."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    shown = {m: c for m, c in verdict["metrics"].items() if c.get("n")}
    fig = Figure(figsize=(7, 0.9 * max(1, len(shown)) + 0.8))
    axes = fig.subplots(max(1, len(shown)), 1, squeeze=False)[:, 0]
    for ax, (metric, c) in zip(axes, shown.items()):
        colour = "tab:green" if c["ci_low"] > 0 else ("tab:red" if c["ci_high"] < 0
                                                       else "tab:gray")
        ax.errorbar([c["improvement"]], [0], xerr=[[c["improvement"] - c["ci_low"]],
                                                   [c["ci_high"] - c["improvement"]]],
                    fmt="o", color=colour, capsize=4)
        ax.axvline(0, color="black", linewidth=0.8)
        if metric == verdict["primary_metric"]:
            ax.axvline(verdict["min_delta"], color="tab:blue", linestyle="--", linewidth=0.8)
        ax.set_yticks([0], [metric + (" (primary)" if metric == verdict["primary_metric"]
                                      else "")])
        span = max(abs(c["ci_low"]), abs(c["ci_high"]), verdict["min_delta"], 1e-3) * 1.3
        ax.set_xlim(-span, span)
    axes[-1].set_xlabel(f"improvement over the base model ({verdict['confidence']:.0%} interval;"
                        f" right is better)")
    fig.suptitle("PASSED" if verdict["passed"] else "FAILED", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
