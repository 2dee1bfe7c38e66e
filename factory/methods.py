"""What each training method reads, built from examples of any kind.

    sft   conversations: chat examples (not labelled undesirable) and desirable binary ones
    dpo   prompt/chosen/rejected: preference pairs, and the best and worst of a reward group
    kto   prompt/completion/label: binary examples, both sides of a pair, labelled or rewarded
          chats, and each completion of a group (label = reward >= data.label_threshold)
    grpo  prompts for online generation: prompt examples, and chats with their answer as the
          reference; chats rewarded on the same prompt become one group, as the seeds build them

Every row keeps the example's id, prompt key, source and metadata, so an error or a leakage check
can always name the raw record. An example a method cannot use is counted, never silently lost.
"""
from __future__ import annotations

import json
from collections import defaultdict

from factory.normalise import prompt_of

METHODS = ("sft", "dpo", "kto", "grpo")


def rows_for(example: dict, method: str, label_threshold: float = 0.5) -> list[dict]:
    """The training rows this example gives `method` (an empty list: it gives none)."""
    content = _ROWS[method](example, label_threshold)
    base = {k: example[k] for k in ("id", "key", "source", "format") if k in example}
    extra = {"tools": example["tools"]} if example.get("tools") else {}
    return [{**base, **row, **extra, "meta": example.get("meta", {})} for row in content]


def _sft(example: dict, threshold: float) -> list[dict]:
    kind = example["kind"]
    # Rewards filter SFT data through data.min_reward; only an explicit bad label excludes here.
    if kind == "chat" and example.get("label") is not False:
        return [{"messages": example["messages"]}]
    if kind == "binary" and example["label"]:
        return [{"messages": example["messages"] + example["completion"]}]
    return []


def _dpo(example: dict, threshold: float) -> list[dict]:
    kind, prompt = example["kind"], example["messages"]
    if kind == "preference":
        return [{"prompt": prompt, "chosen": example["chosen"], "rejected": example["rejected"]}]
    if kind == "group":
        best, worst = _extremes(example["rewards"])
        if example["rewards"][best] > example["rewards"][worst]:
            return [{"prompt": prompt, "chosen": example["completions"][best],
                     "rejected": example["completions"][worst]}]
    return []


def _kto(example: dict, threshold: float) -> list[dict]:
    kind, prompt = example["kind"], example["messages"]
    if kind == "binary":
        return [{"prompt": prompt, "completion": example["completion"],
                 "label": example["label"]}]
    if kind == "preference":
        return [{"prompt": prompt, "completion": example["chosen"], "label": True},
                {"prompt": prompt, "completion": example["rejected"], "label": False}]
    if kind == "group":
        return [{"prompt": prompt, "completion": c, "label": r >= threshold}
                for c, r in zip(example["completions"], example["rewards"])]
    if kind == "chat":
        label = _desirable(example, threshold)
        if label is not None:
            prompt = prompt_of(example)
            return [{"prompt": prompt, "completion": example["messages"][len(prompt):],
                     "label": label}]
    return []


def _grpo(example: dict, threshold: float) -> list[dict]:
    kind, prompt = example["kind"], example["messages"]
    if kind == "prompt":
        return [{"prompt": prompt, **({"answer": example["answer"]} if "answer" in example
                                      else {})}]
    if kind == "group":
        return [{"prompt": prompt, "completions": example["completions"],
                 "rewards": example["rewards"]}]
    if kind == "chat" and example.get("label") is not False:
        prompt = prompt_of(example)
        return [{"prompt": prompt, "answer": answer_text(example["messages"][-1])}]
    if kind in ("binary", "preference"):
        reference = example["completion"] if kind == "binary" else example["chosen"]
        if kind == "preference" or example["label"]:
            return [{"prompt": prompt, "answer": answer_text(reference[-1])}]
        return [{"prompt": prompt}]
    return []


_ROWS = {"sft": _sft, "dpo": _dpo, "kto": _kto, "grpo": _grpo}


def group_rewarded_chats(rows: list[dict], rewards: dict[str, float]) -> list[dict]:
    """GRPO rows of rewarded chats that share a prompt, merged into one group per prompt.

    `rewards` maps a row's id to its chat's reward. Prompts answered once stay prompt rows.
    """
    by_key: dict[str, list[dict]] = defaultdict(list)
    out = []
    for row in rows:
        (by_key[row["key"]] if row["id"] in rewards and "answer" in row else out).append(row)
    for members in by_key.values():
        answers = {m["answer"] for m in members}
        if len(answers) < 2:
            out.extend(members)
            continue
        first = members[0]
        group = {**first, "completions": [[{"role": "assistant", "content": m["answer"]}]
                                          for m in members],
                 "rewards": [rewards[m["id"]] for m in members],
                 "source": ", ".join(m["source"] for m in members)}
        group["answer"] = members[_extremes(group["rewards"])[0]]["answer"]
        out.append(group)
    return out


def eval_conversation(example: dict) -> list[dict] | None:
    """The conversation to score on, ending with the reference answer; None when the example
    holds no answer worth matching (an undesirable one, or a prompt without a reference)."""
    kind, prompt = example["kind"], example["messages"]
    if kind == "chat":
        return prompt if example.get("label") is not False else None
    if kind == "preference":
        return prompt + example["chosen"]
    if kind == "binary":
        return prompt + example["completion"] if example["label"] else None
    if kind == "group":
        return prompt + example["completions"][_extremes(example["rewards"])[0]]
    if kind == "prompt" and "answer" in example:
        return prompt + [{"role": "assistant", "content": example["answer"]}]
    return None


def answer_text(message: dict) -> str:
    """The reference answer as text: tool calls in FunctionGemma syntax, or as JSON when a
    value cannot be written in it (a string holding the escape token itself)."""
    if message.get("tool_calls"):
        from factory import funcgemma  # only tool-call answers need the serializer

        try:
            return funcgemma.openai_to_text(message.get("content") or "", message["tool_calls"])
        except funcgemma.FunctionCallError:
            return json.dumps(message["tool_calls"], ensure_ascii=False, sort_keys=True)
    return message.get("content") or ""


def _desirable(example: dict, threshold: float) -> bool | None:
    if example.get("label") is not None:
        return bool(example["label"])
    if example.get("reward") is not None:
        return example["reward"] >= threshold
    return None


def _extremes(rewards: list[float]) -> tuple[int, int]:
    best = max(range(len(rewards)), key=rewards.__getitem__)
    worst = min(range(len(rewards)), key=rewards.__getitem__)
    return best, worst
