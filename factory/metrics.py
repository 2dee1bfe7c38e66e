"""The metrics an eval can report, and which way is better for each.

Names are stable: they appear in training-config.json (`eval.metrics`, `eval.primary_metric`,
`eval.guards`), in every line of metrics/eval-examples.jsonl and in the verdict. A reward defined
under `rewards` in the config becomes the metric `reward:<name>`.

Per example a metric is a number, or None where it does not apply (tool-call metrics on an example
whose reference makes no call); a None never counts for or against either model.

Standard library only: the core validates the config with it.
"""
from __future__ import annotations

from dataclasses import dataclass

REWARD_PREFIX = "reward:"


@dataclass(frozen=True)
class Metric:
    higher_is_better: bool
    description: str


BUILTIN: dict[str, Metric] = {
    "loss": Metric(False, "Mean negative log-likelihood of the reference's assistant tokens."),
    "exact_match": Metric(True, "Greedy answer equals the reference, character for character "
                                "(ends stripped)."),
    "normalized_match": Metric(True, "Equal after Unicode NFKC, case folding, collapsed "
                                     "whitespace and outer punctuation removed."),
    "tool_parse": Metric(True, "The answer holds at least one well-formed call (FunctionGemma or "
                               "OpenAI JSON) where the reference calls a tool."),
    "tool_name": Metric(True, "The answer calls the same functions as the reference (as a "
                              "multiset)."),
    "tool_args_exact": Metric(True, "The same calls with exactly the same argument values."),
    "tool_args_valid": Metric(True, "Every call's arguments are a JSON object that fits the "
                                    "declared tool's parameter schema (or, without one, is "
                                    "valid JSON)."),
}
DEFAULT_METRICS = list(BUILTIN)


def reward_metric(name: str) -> str:
    return REWARD_PREFIX + name


def higher_is_better(metric: str) -> bool:
    if metric.startswith(REWARD_PREFIX):
        return True
    return BUILTIN[metric].higher_is_better


def unknown(metrics: list[str], reward_names: set[str]) -> list[str]:
    """The names in `metrics` that are neither built in nor a configured reward."""
    return [m for m in metrics if m not in BUILTIN and not (
        m.startswith(REWARD_PREFIX) and m[len(REWARD_PREFIX):] in reward_names)]


_PUNCTUATION = " \t\n\r.,;:!?\"'`()[]{}«»“”‘’"


def normalized(text: str) -> str:
    """The form normalized_match compares: NFKC, case-folded, whitespace collapsed, outer
    punctuation and quotes removed."""
    import unicodedata

    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.split()).strip(_PUNCTUATION)
