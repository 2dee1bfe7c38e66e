"""A real, tiny causal LM built on the spot, so the demo and the tests never need a model hub.

It is saved with `save_pretrained`, so the pipeline loads it through exactly the code path that
loads a hub id on a user's machine. torch and friends are imported inside the builder: the CLI
imports this module to print help, which must not cost a torch import.
"""
from __future__ import annotations

from pathlib import Path

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"
# FunctionGemma markers stay out of the special set: decoding with skip_special_tokens=True
# must keep them, or a generated call could never be compared with its reference.
CALL_TOKENS = ["<start_function_call>", "<end_function_call>", "<escape>"]

# ChatML. The assistant's <|im_end|> sits inside {% generation %} so that TRL's
# assistant_only_loss trains the model to stop, not just to start.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}"
    "{{- message['content'] + '<|im_end|>' -}}"
    "{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

VOCAB_SIZE = 1024
HIDDEN = 128
LAYERS = 2
HEADS = 4
MAX_POSITIONS = 256
# Llama's default 0.02 leaves a frozen random lm_head unable to produce confident logits, so
# LoRA could rank the right token first yet never push its loss down. ~1/sqrt(hidden) can.
INIT_STD = 0.08


def build_tiny_model(out_dir: Path, corpus: list[str], *, seed: int = 0) -> dict:
    """Train a tokenizer on `corpus`, build a random-init Llama, save both into `out_dir`.

    The same corpus and seed give byte-identical files, so the model's hash is a stable input.
    """
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # Byte-level BPE: any text at all encodes, no <unk>.
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    specials = [IM_START, IM_END, PAD]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=specials + CALL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(corpus, trainer=trainer)
    raw.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    raw.add_tokens([AddedToken(t, special=False, normalized=False) for t in CALL_TOKENS])

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token=IM_END,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        clean_up_tokenization_spaces=False,
        model_max_length=MAX_POSITIONS,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials + CALL_TOKENS}

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=4 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=ids[IM_START],
        eos_token_id=ids[IM_END],
        pad_token_id=ids[PAD],
        tie_word_embeddings=False,
        initializer_range=INIT_STD,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids[IM_START],
        eos_token_id=ids[IM_END],
        pad_token_id=ids[PAD],
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

    return {
        "arch": "LlamaForCausalLM",
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
    }
