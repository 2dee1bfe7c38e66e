"""Does a GGUF file hold the model it was written from? Tokenizer, template, tensors, answers.

Three checks, strictest first:
  1. metadata: every token, its type, every merge, the special ids, add_bos and the chat template
     equal the training tokenizer's (lost templates and dropped added tokens fail here);
  2. tensors: every weight is present and within its quant type's error of the original;
  3. answers: greedy replies to the parity probes agree with the merged model's on at least
     `min_agreement` of them, decoded from the file's own tensors, and, where llama-cpp-python
     is installed, by llama.cpp itself with its own tokenizer.
"""
from __future__ import annotations

from pathlib import Path

from factory.runtime import gguf_export

# Largest error of a dequantized weight, relative to the tensor's largest magnitude.
TENSOR_TOLERANCE = {"F32": 0.0, "F16": 1e-3, "BF16": 1e-2, "Q8_0": 1e-2, "Q6_K": 3e-2,
                    "Q5_0": 6e-2, "Q5_1": 6e-2, "Q5_K": 6e-2, "Q4_0": 0.15, "Q4_1": 0.15,
                    "Q4_K": 0.15, "Q3_K": 0.3, "Q2_K": 0.5}
# Share of probes whose greedy reply must equal the merged model's, by export type.
MIN_AGREEMENT = {"F32": 1.0, "F16": 1.0, "BF16": 0.8, "Q8_0": 0.8, "Q6_K": 0.8, "Q5_0": 0.6,
                 "Q5_1": 0.6, "Q5_K_M": 0.6, "Q4_0": 0.6, "Q4_1": 0.6, "Q4_K_M": 0.6,
                 "Q3_K_M": 0.4, "Q2_K": 0.2}
METADATA_KEYS = {"tokens": "tokenizer.ggml.tokens", "types": "tokenizer.ggml.token_type",
                 "merges": "tokenizer.ggml.merges", "pre": "tokenizer.ggml.pre",
                 "add_bos": "tokenizer.ggml.add_bos_token",
                 "chat_template": "tokenizer.chat_template"}
SPECIAL_KEYS = {"bos": "tokenizer.ggml.bos_token_id", "eos": "tokenizer.ggml.eos_token_id",
                "pad": "tokenizer.ggml.padding_token_id", "unk": "tokenizer.ggml.unknown_token_id"}


def metadata_problems(read: gguf_export.ReadBack, vocab: gguf_export.Vocabulary) -> list[str]:
    problems = []
    for field, key in METADATA_KEYS.items():
        if read.metadata.get(key) != getattr(vocab, field):
            problems.append(f"{key} differs from the training tokenizer's {field}")
    for name, token_id in vocab.special_ids.items():
        if read.metadata.get(SPECIAL_KEYS[name]) != token_id:
            problems.append(f"{SPECIAL_KEYS[name]} is not {token_id}")
    return problems


def tensor_problems(read: gguf_export.ReadBack, original: dict) -> tuple[list[str], float]:
    """Problems, and the largest relative error seen over all tensors."""
    problems, worst = [], 0.0
    expected = {k for k in original if not k.endswith("rotary_emb.inv_freq")}
    for missing in sorted(expected - set(read.tensors)):
        problems.append(f"tensor {missing} is missing")
    for name, array in read.tensors.items():
        source = original[name].float().numpy()
        if array.shape != source.shape:
            problems.append(f"tensor {name} has shape {array.shape}, expected {source.shape}")
            continue
        scale = float(abs(source).max()) or 1.0
        error = float(abs(array - source).max()) / scale
        worst = max(worst, error)
        qtype = read.tensor_types[name]
        if error > TENSOR_TOLERANCE.get(qtype, 0.5):
            problems.append(f"tensor {name} ({qtype}) is off by {error:.3g} of its scale")
    return problems, worst


def model_from(read: gguf_export.ReadBack, merged_dir: Path):
    """A transformers model built from the GGUF's own (dequantized) tensors."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(merged_dir)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = {k: torch.from_numpy(v.copy()) for k, v in read.tensors.items()}
    model.load_state_dict(state, strict=not config.tie_word_embeddings)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.eval()


def agreement(expected: list[str], got: list[str]) -> float:
    return sum(a == b for a, b in zip(expected, got)) / max(len(expected), 1)


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def llama_cpp_answers(path: Path, tokenizer, probes: list[list[dict]], max_new_tokens: int,
                      add_bos: bool) -> tuple[list[str], int]:
    """Greedy replies from llama.cpp, and how many prompts it tokenized unlike transformers."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=tokenizer.model_max_length if
                tokenizer.model_max_length < 1 << 20 else 4096, verbose=False, seed=0)
    answers, token_mismatches = [], 0
    for messages in probes:
        text = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True,
                                             tokenize=False)
        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        if ids != tokenizer(text, add_special_tokens=add_bos)["input_ids"]:
            token_mismatches += 1
        out = []
        for token in llm.generate(ids, top_k=1, temp=0.0, reset=True):
            if token == llm.token_eos() or len(out) >= max_new_tokens:
                break
            out.append(token)
        answers.append(tokenizer.decode(out, skip_special_tokens=True).strip())
    return answers, token_mismatches
