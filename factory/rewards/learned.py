"""The learned reward: P(desirable) from a logistic regression trained on labelled examples.

Some qualities (tone, a house style, "answers like our support team") have no rule a program can
check, but a few dozen labelled answers show them. At build time this trains a small linear model
on those labels, in the standard library and deterministically: no random draws, the same float
operations in the same order, so the same file gives the same weights on every run and a baseline
scored with it stays comparable.

Model: word unigrams and bigrams (lower-cased `\\w+` runs) hashed (CRC-32) into 2**20 buckets,
counts scaled to unit length; logistic regression fitted by stochastic gradient descent over a
fixed order of the examples, EPOCHS passes, step LEARNING_RATE / (1 + epoch), L2 penalty L2 on
the weights (not the bias). Both labels weigh the same in total, so a file with few undesirable
examples still teaches what makes one: the score is P(desirable) under equal priors.
Training costs about a second per thousand examples of a few dozen words.
"""
from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from factory.rewards.base import Reward, RewardError, project_file

BUCKETS = 2 ** 20
EPOCHS = 15
LEARNING_RATE = 0.5
L2 = 1e-4
MIN_EXAMPLES = 4
_WORD = re.compile(r"\w+")
ROW_SHAPES = ('{"text": str, "label": bool} or {"prompt": ..., "completion": str or a list of '
              'messages, "label": bool}')


@dataclass(frozen=True)
class Model:
    weights: dict[int, float]
    bias: float

    def probability(self, text: str) -> float:
        x = features(text)
        return _sigmoid(self.bias + sum(self.weights.get(f, 0.0) * v for f, v in x.items()))


def learned(spec: dict, root: Path | None) -> Reward:
    path = project_file(spec, "examples", root)
    model = train(load_examples(path, spec))

    def reward(answer: str, context: dict) -> float:
        return model.probability(answer)
    return reward


# --------------------------------------------------------------------------------- the data

def load_examples(path: Path, spec: dict) -> list[tuple[str, bool]]:
    """(text, label) for every row of the JSONL file; refuses a file a model cannot learn from."""
    where = f"reward {spec['name']} (learned): {spec['examples']}"
    examples = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RewardError(f"{where} line {number}: not JSON ({exc.msg}, column "
                                  f"{exc.colno})") from None
            try:
                examples.append(_labelled(row))
            except ValueError as exc:
                raise RewardError(f"{where} line {number}: {exc}") from None
    labels = [label for _, label in examples]
    if len(examples) < MIN_EXAMPLES:
        raise RewardError(f"{where} holds {len(examples)} labelled example(s); at least "
                          f"{MIN_EXAMPLES} are needed, desirable and undesirable")
    if all(labels) or not any(labels):
        raise RewardError(f"{where}: all {len(examples)} examples are labelled {labels[0]}; "
                          f"it needs both desirable (true) and undesirable (false) ones")
    return examples


def _labelled(row) -> tuple[str, bool]:
    if not isinstance(row, dict):
        raise ValueError(f"expected an object {ROW_SHAPES}, found {type(row).__name__}")
    if not isinstance(row.get("label"), bool):
        found = type(row["label"]).__name__ if "label" in row else "no label"
        raise ValueError(f"expected label true or false, found {found}")
    if isinstance(row.get("text"), str):
        return row["text"], row["label"]
    completion = row.get("completion")
    if isinstance(completion, str):
        return completion, row["label"]
    if isinstance(completion, list) and all(isinstance(m, dict) for m in completion):
        from factory.methods import answer_text  # tool calls read as the model would write them

        return "\n".join(answer_text(m) for m in completion), row["label"]
    raise ValueError(f"expected {ROW_SHAPES}, found keys {', '.join(sorted(row)) or 'none'}")


# --------------------------------------------------------------------------------- the model

def features(text: str) -> dict[int, float]:
    """Hashed unigram and bigram counts, scaled to unit length (so long answers do not shout)."""
    words = _WORD.findall(text.lower())
    grams = [f"1 {w}" for w in words] + [f"2 {a} {b}" for a, b in zip(words, words[1:])]
    counts: dict[int, float] = {}
    for gram in grams:
        bucket = zlib.crc32(gram.encode("utf-8")) % BUCKETS
        counts[bucket] = counts.get(bucket, 0.0) + 1.0
    norm = math.sqrt(sum(v * v for v in counts.values()))
    return {f: v / norm for f, v in counts.items()} if norm else {}


def train(examples: list[tuple[str, bool]]) -> Model:
    xs = [list(features(text).items()) for text, _ in examples]
    ys = [label for _, label in examples]
    positives = sum(ys)
    class_weight = {True: len(ys) / (2 * positives), False: len(ys) / (2 * (len(ys) - positives))}
    # A fixed interleaving: a file sorted by label would otherwise end each pass on one class.
    order = sorted(range(len(xs)), key=lambda i: zlib.crc32(str(i).encode()))
    # w = scale * v, so the L2 shrink of every weight is one multiplication per step. v is a
    # flat list: indexing it is the inner loop, and much faster than a dict lookup.
    v = [0.0] * BUCKETS
    scale, bias = 1.0, 0.0
    for epoch in range(EPOCHS):
        rate = LEARNING_RATE / (1 + epoch)
        for i in order:
            x, y = xs[i], ys[i]
            z = 0.0
            for f, value in x:
                z += v[f] * value
            gradient = (_sigmoid(bias + scale * z) - float(y)) * class_weight[y]
            scale *= 1.0 - rate * L2
            step = rate * gradient / scale
            for f, value in x:
                v[f] -= step * value
            bias -= rate * gradient
        if scale < 1e-6:  # fold the shrink back in before v grows past float precision
            v, scale = [w * scale for w in v], 1.0
    used = {f for x in xs for f, _ in x}
    return Model({f: v[f] * scale for f in sorted(used)}, bias)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
