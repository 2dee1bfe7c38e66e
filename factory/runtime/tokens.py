"""Token lengths of training rows, rendered through the model's own chat template.

A row is as long as the longest sequence the trainer will build from it: the conversation for SFT,
prompt + chosen and prompt + rejected for DPO, prompt + completion for KTO, and the prompt (plus
each offline completion) for GRPO. Lengths are measured on exactly the text the trainer sees, so a
record that fits here is never truncated later.
"""
from __future__ import annotations


def sequences(row: dict, method: str) -> list[tuple[list[dict], bool]]:
    """(messages, add_generation_prompt) for every sequence the trainer builds from the row."""
    if method == "sft":
        return [(row["messages"], False)]
    if method == "dpo":
        return [(row["prompt"] + row["chosen"], False), (row["prompt"] + row["rejected"], False)]
    if method == "kto":
        return [(row["prompt"] + row["completion"], False)]
    offline = [(row["prompt"] + c, False) for c in row.get("completions", [])]
    return [(row["prompt"], True)] + offline


def lengths(tokenizer, rows: list[dict], method: str) -> list[int | str]:
    """Per row: its token length, or why the chat template could not render it."""
    texts, owners, out = [], [], []
    for index, row in enumerate(rows):
        out.append(0)
        for messages, generation in sequences(row, method):
            try:
                texts.append(tokenizer.apply_chat_template(
                    messages, tools=row.get("tools"), tokenize=False,
                    add_generation_prompt=generation))
            except Exception as exc:  # a template raises whatever Jinja raises
                out[index] = f"the chat template cannot render it: {type(exc).__name__}: {exc}"
                break
            owners.append(index)
    for owner, length in zip(owners, count(tokenizer, texts)):
        if isinstance(out[owner], int):
            out[owner] = max(out[owner], length)
    return out


def count(tokenizer, texts: list[str]) -> list[int]:
    """Token counts of already rendered texts.

    The template already wrote BOS and friends into the text; adding them again would overcount
    every row by the model's special-token count. A fast tokenizer is asked directly for the
    counts (no offsets, no Python encodings: the format gate measures every row).
    """
    if not texts:
        return []
    backend = _whole_backend(tokenizer)
    if backend is None:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return [len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]


# id(tokenizer) -> (tokenizer, its copy); holding the tokenizer keeps its id from being reused.
_BACKENDS: dict[int, tuple] = {}


def _whole_backend(tokenizer):
    """A copy of the Rust tokenizer with truncation and padding off, so no length is capped;
    None for a slow tokenizer or an old tokenizers without encode_batch_fast."""
    key = id(tokenizer)
    if key not in _BACKENDS:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        copy = None
        if backend is not None and hasattr(backend, "encode_batch_fast"):
            from tokenizers import Tokenizer

            copy = Tokenizer.from_str(backend.to_str())
            copy.no_truncation()
            copy.no_padding()
        _BACKENDS[key] = (tokenizer, copy)
    return _BACKENDS[key][1]
