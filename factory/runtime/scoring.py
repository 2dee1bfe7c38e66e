"""Per-example scores on the frozen eval split, identical for the base model and a candidate.

Both the baseline and the evaluate script call `score_examples`, so the two sides of every
comparison use the same chat template, truncation, batching and greedy decoding.
"""
from __future__ import annotations

import math

from factory import envs
from factory.metrics import BUILTIN

BATCH_SIZE = 16


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def assistant_losses(model, tokenizer, conversations: list[list[dict]],
                     max_length: int) -> list[tuple[float, int]]:
    """Per conversation: mean negative log-likelihood over assistant tokens, and their count."""
    import torch

    encoded = [tokenizer.apply_chat_template(m, tokenize=True, return_dict=True,
                                             return_assistant_tokens_mask=True)
               for m in conversations]
    ids = [e["input_ids"][:max_length] for e in encoded]
    masks = [e["assistant_masks"][:max_length] for e in encoded]
    width = max(len(i) for i in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([i + [pad] * (width - len(i)) for i in ids], device=model.device)
    attention = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids],
                             device=model.device)
    targets = torch.tensor([m + [0] * (width - len(m)) for m in masks], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention).logits.float()
    # Token t is predicted from position t-1, so drop the first target and the last logit.
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:],
                                            reduction="none")
    keep = targets[:, 1:].float()
    counts = keep.sum(dim=1)
    sums = (nll * keep).sum(dim=1)
    return [(float(s / c) if c > 0 else math.nan, int(c)) for s, c in zip(sums, counts)]


def greedy_answers(model, tokenizer, conversations: list[list[dict]],
                   max_new_tokens: int) -> list[str]:
    """Greedy replies to everything before each conversation's final assistant turn."""
    import torch

    prompts = [tokenizer.apply_chat_template(m[:-1], add_generation_prompt=True, tokenize=False)
               for m in conversations]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    try:
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    batch = {k: v.to(model.device) for k, v in batch.items()}
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    new_tokens = out[:, batch["input_ids"].shape[1]:]
    return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def greedy_answer(model, tokenizer, messages: list[dict], max_new_tokens: int) -> str:
    return greedy_answers(model, tokenizer, [messages], max_new_tokens)[0]


def score_examples(model, tokenizer, records: list[dict], *, max_length: int,
                   max_new_tokens: int, metrics: list[str], rewards: dict | None = None,
                   on_progress=None) -> list[dict]:
    rows = []
    for batch in _batches(records, BATCH_SIZE):
        conversations = [r["messages"] for r in batch]
        losses = assistant_losses(model, tokenizer, conversations, max_length)
        predictions = greedy_answers(model, tokenizer, conversations, max_new_tokens)
        for record, (loss, tokens), prediction in zip(batch, losses, predictions):
            # env: so every per-environment figure of the verdict can be recomputed from here
            row = {"id": record["id"], "source": record.get("source"), "env": envs.of_row(record),
                   "assistant_tokens": tokens, "loss": None if math.isnan(loss) else loss}
            row.update(example_scores(prediction, record, metrics, rewards or {}))
            # Only the configured metrics are kept, so the files hold what the verdict judged.
            rows.append({k: v for k, v in row.items() if k in metrics or k not in BUILTIN}
                        | {"prediction": prediction})
        if on_progress:
            on_progress(len(rows), len(records))
    return rows


def example_scores(prediction: str, record: dict, metrics: list[str], rewards: dict) -> dict:
    """Every generation-level metric of one answer; None where a metric does not apply."""
    from factory import methods, toolcalls
    from factory.metrics import REWARD_PREFIX, normalized
    from factory.rewards import context_of

    last = record["messages"][-1]
    reference = methods.answer_text(last).strip()
    scores: dict = {"reference": reference,
                    "exact_match": float(prediction == reference),
                    "normalized_match": float(normalized(prediction) == normalized(reference))}
    expected = toolcalls.reference_calls(last)
    if expected:
        scores.update(toolcalls.judge(prediction, expected, record.get("tools")))
    else:
        scores.update(dict.fromkeys(("tool_parse", "tool_name", "tool_args_exact",
                                     "tool_args_valid")))
    names = [m[len(REWARD_PREFIX):] for m in metrics if m.startswith(REWARD_PREFIX)]
    if names:
        # The context GRPO's rewards see too (tools, tests, prompt, meta), with the reference
        # computed above.
        context = {**context_of(record), "reference": reference}
        for name in names:
            scores[REWARD_PREFIX + name] = _reward_score(name, rewards[name], prediction, context,
                                                         record)
    return scores


def _reward_score(name: str, reward, prediction: str, context: dict, record: dict) -> float:
    from factory.rewards import RewardError

    try:
        return float(reward(prediction, context))
    except Exception as exc:  # a user's reward may raise anything; say which one, and where
        said = str(exc) if isinstance(exc, RewardError) else \
            f"reward {name} raised {type(exc).__name__}: {exc}"
        raise RewardError(f"{said} (eval record {record.get('id', '?')})") from exc


def aggregate(rows: list[dict], metrics: list[str]) -> dict:
    """Mean of each metric over the examples it applies to, with that count."""
    out: dict = {"examples": len(rows)}
    for metric in metrics:
        values = [r[metric] for r in rows if r.get(metric) is not None]
        out[metric] = sum(values) / len(values) if values else None
        out[f"{metric}_n"] = len(values)
    if out.get("loss") is not None:
        out["perplexity"] = math.exp(out["loss"]) if out["loss"] < 50 else None
    return out
