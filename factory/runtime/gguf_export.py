"""GGUF files from merged weights, written with the `gguf` package, and read back to be checked.

What goes wrong in the field is rarely the tensors: it is the tokenizer and the chat template
(a wrong pre-tokenizer guessed, added tokens dropped, a template lost or doubled BOS). So the
writer refuses what it cannot describe exactly, and `read_back` returns everything a runtime will
see (vocabulary, merges, special ids, template, tensors) for the deploy script to compare with
the model it came from.

Supported: Llama-style (Llama, Mistral) and Qwen2 architectures with a byte-level BPE
tokenizer (tokenizer.json). K-quants (Q4_K_M, ...) are made by llama.cpp's own quantizer through
llama-cpp-python when it is installed, from an F32 file written here.
"""
from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from factory.runtime.report import ScriptError

ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama",
                 "Qwen2ForCausalLM": "qwen2"}
# The pre-tokenizer split regexes llama.cpp knows by name. An unknown one is refused: a guessed
# pre-tokenizer silently changes how text is cut into tokens (llama.cpp#7062).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}"
                r"\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}"
               r"\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SIMPLE_TYPES = {"F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1"}
LLAMA_CPP_TYPES = {"Q6_K": "MOSTLY_Q6_K", "Q5_K_M": "MOSTLY_Q5_K_M", "Q4_K_M": "MOSTLY_Q4_K_M",
                   "Q3_K_M": "MOSTLY_Q3_K_M", "Q2_K": "MOSTLY_Q2_K"}
FILE_TYPES = {"F32": "ALL_F32", "F16": "MOSTLY_F16", "BF16": "MOSTLY_BF16", "Q8_0": "MOSTLY_Q8_0",
              "Q5_0": "MOSTLY_Q5_0", "Q5_1": "MOSTLY_Q5_1", "Q4_0": "MOSTLY_Q4_0",
              "Q4_1": "MOSTLY_Q4_1"}
GENERATION_TAG = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5


def portable_template(template: str) -> str:
    """The chat template without transformers' {% generation %} markers.

    They only tell the trainer which tokens are the assistant's; they render nothing, and
    llama.cpp's and Ollama's template engines do not know the tag.
    """
    return GENERATION_TAG.sub("", template)


@dataclass
class Vocabulary:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    add_bos: bool
    special_ids: dict[str, int]
    chat_template: str | None


def vocabulary(tokenizer, vocab_size: int, tokenizer_json: Path) -> Vocabulary:
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE" or not _byte_level(data):
        raise ScriptError("E_EXPORT", "GGUF export here supports byte-level BPE tokenizers only "
                                      f"(this one is {model.get('type')!r})",
                          hint="Use llama.cpp's convert_hf_to_gguf.py on the merged/ folder.")
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i in added:
            tokens.append(added[i].content)
            types.append(TOKEN_CONTROL if added[i].special else TOKEN_USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(TOKEN_NORMAL)
        else:  # embedding rows padded past the tokenizer
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    return Vocabulary(tokens=tokens, types=types, merges=merges, pre=_pre_name(data),
                      add_bos=adds_bos(tokenizer), special_ids=_special_ids(tokenizer),
                      chat_template=portable_template(template) if template else None)


def _byte_level(data: dict) -> bool:
    decoder = data.get("decoder") or {}
    return decoder.get("type") == "ByteLevel" or any(
        d.get("type") == "ByteLevel" for d in decoder.get("decoders", []))


def _pre_name(data: dict) -> str:
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    splits = [s["pattern"].get("Regex") for s in steps if s.get("type") == "Split"]
    known = {LLAMA3_SPLIT: "llama-bpe", QWEN2_SPLIT: "qwen2"}
    if len(splits) == 1 and splits[0] in known:
        return known[splits[0]]
    raise ScriptError("E_EXPORT", f"the tokenizer's pre-tokenizer ({kinds}) is not one whose "
                                  "llama.cpp name is known; guessing would change tokenization",
                      hint="Use llama.cpp's convert_hf_to_gguf.py, which checks it by hash.")


def adds_bos(tokenizer) -> bool:
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id


def _special_ids(tokenizer) -> dict[str, int]:
    named = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id,
             "pad": tokenizer.pad_token_id, "unk": tokenizer.unk_token_id}
    return {k: int(v) for k, v in named.items() if v is not None}


def write(merged_dir: Path, out_path: Path, quant: str, name: str) -> dict:
    """Write `merged_dir` as one GGUF file of type `quant`; return what was written."""
    if quant in LLAMA_CPP_TYPES:
        return _write_with_llama_cpp(merged_dir, out_path, quant, name)
    if quant not in SIMPLE_TYPES:
        raise ScriptError("E_EXPORT", f"unknown GGUF type {quant}")
    import gguf
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(merged_dir)
    arch = _arch(config)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    vocab = vocabulary(tokenizer, config.vocab_size, merged_dir / "tokenizer.json")
    qtype = gguf.GGMLQuantizationType[quant]
    writer = gguf.GGUFWriter(str(out_path), arch, use_temp_file=True)
    _write_metadata(writer, config, arch, vocab, name, quant)
    counts: dict[str, int] = {}
    for gguf_name, array in _gguf_tensors(merged_dir, config, arch):
        stored = qtype if array.ndim == 2 and _fits(array, qtype) else gguf.GGMLQuantizationType.F32
        data = gguf.quants.quantize(array, stored) if stored.name != "F32" else array
        writer.add_tensor(gguf_name, data, raw_dtype=stored)
        counts[stored.name] = counts.get(stored.name, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"file": out_path.name, "type": quant, "architecture": arch, "tensor_types": counts,
            "bytes": out_path.stat().st_size}


def _arch(config) -> str:
    names = getattr(config, "architectures", None) or []
    arch = next((ARCHITECTURES[n] for n in names if n in ARCHITECTURES), None)
    if arch is None:
        raise ScriptError("E_EXPORT", f"GGUF export here supports {sorted(ARCHITECTURES)}; "
                                      f"this model is {names}",
                          hint="Use llama.cpp's convert_hf_to_gguf.py on the merged/ folder, or "
                               "drop gguf from deploy.outputs.")
    scaling = getattr(config, "rope_scaling", None) or {}
    if scaling.get("rope_type", scaling.get("type", "default")) not in ("default", None):
        raise ScriptError("E_EXPORT", f"rope scaling {scaling} is not written by this exporter",
                          hint="Use llama.cpp's convert_hf_to_gguf.py on the merged/ folder.")
    return arch


def _fits(array, qtype) -> bool:
    import gguf

    block = gguf.GGML_QUANT_SIZES[qtype][0]
    return array.shape[-1] % block == 0


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def _write_metadata(writer, config, arch: str, vocab: Vocabulary, name: str, quant: str) -> None:
    import gguf

    heads = config.num_attention_heads
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType[FILE_TYPES[quant]])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_rope_dimension_count(getattr(config, "head_dim", None)
                                    or config.hidden_size // heads)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    adders = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id,
              "pad": writer.add_pad_token_id, "unk": writer.add_unk_token_id}
    for key, token_id in vocab.special_ids.items():
        adders[key](token_id)
    writer.add_add_bos_token(vocab.add_bos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


def _gguf_tensors(merged_dir: Path, config, arch: str):
    """(gguf name, float32 array) for every weight, in llama.cpp's layout."""
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config.num_hidden_layers)
    for hf_name, array in _safetensors(merged_dir):
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ScriptError("E_EXPORT", f"no GGUF name for tensor {hf_name}")
        if arch == "llama":
            array = _to_llama_cpp_rope(hf_name, array, config)
        yield gguf_name, array


def _safetensors(merged_dir: Path):
    from safetensors import safe_open

    files = sorted(merged_dir.glob("*.safetensors"))
    if not files:
        raise ScriptError("E_EXPORT", f"{merged_dir} has no .safetensors weights")
    for path in files:
        with safe_open(str(path), framework="pt") as fh:
            for key in fh.keys():
                yield key, fh.get_tensor(key).float().numpy()


def _to_llama_cpp_rope(hf_name: str, array, config):
    # HF rotates halves of each head; llama.cpp's llama rope rotates interleaved pairs, so
    # the q/k rows are reordered (the same permutation llama.cpp's converter applies).
    return _reorder_rope_rows(hf_name, array, config, _permute)


def _from_llama_cpp_rope(hf_name: str, array, config):
    return _reorder_rope_rows(hf_name, array, config, _unpermute)


def _reorder_rope_rows(hf_name: str, array, config, reorder):
    heads = config.num_attention_heads
    if hf_name.endswith("q_proj.weight"):
        return reorder(array, heads)
    if hf_name.endswith("k_proj.weight"):
        return reorder(array, getattr(config, "num_key_value_heads", None) or heads)
    return array


def _permute(array, heads: int):
    rows = array.shape[0]
    return array.reshape(heads, 2, rows // heads // 2, *array.shape[1:]).swapaxes(1, 2) \
        .reshape(array.shape)


def _unpermute(array, heads: int):
    rows = array.shape[0]
    return array.reshape(heads, rows // heads // 2, 2, *array.shape[1:]).swapaxes(1, 2) \
        .reshape(array.shape)


def _write_with_llama_cpp(merged_dir: Path, out_path: Path, quant: str, name: str) -> dict:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ScriptError("E_EXPORT", f"GGUF type {quant} is made by llama.cpp's quantizer, and "
                                      "llama-cpp-python is not installed",
                          hint="pip install llama-cpp-python (it compiles llama.cpp), or use "
                               "Q8_0/Q5_0/Q4_0 in deploy.gguf.quantizations.") from exc
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        source = Path(tmp) / "f32.gguf"
        written = write(merged_dir, source, "F32", name)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{LLAMA_CPP_TYPES[quant]}")
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(out_path).encode(),
                                                params)
    if status != 0:
        raise ScriptError("E_EXPORT", f"llama.cpp could not quantize to {quant} (status {status})")
    import gguf

    counts: dict[str, int] = {}
    for tensor in gguf.GGUFReader(str(out_path)).tensors:  # llama.cpp picks some per tensor
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    return {**written, "file": out_path.name, "type": quant, "quantizer": "llama.cpp",
            "tensor_types": counts, "bytes": out_path.stat().st_size}


@dataclass
class ReadBack:
    metadata: dict
    tensors: dict[str, object]  # HF name -> float32 array, back in transformers' layout
    tensor_types: dict[str, str]


def read_back(path: Path, config) -> ReadBack:
    """Everything a runtime would read from `path`: metadata, and tensors dequantized."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    metadata = {key: field.contents() for key, field in reader.fields.items()
                if not key.startswith("GGUF.")}
    arch = metadata["general.architecture"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config.num_hidden_layers)
    to_hf = _reverse_names(names, config)
    tensors, types = {}, {}
    for tensor in reader.tensors:
        array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        hf_name = to_hf[tensor.name]
        if arch == "llama":
            array = _from_llama_cpp_rope(hf_name, array, config)
        tensors[hf_name] = array
        types[hf_name] = tensor.tensor_type.name
    return ReadBack(metadata=metadata, tensors=tensors, tensor_types=types)


def _reverse_names(names, config) -> dict[str, str]:
    candidates = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    for i in range(config.num_hidden_layers):
        prefix = f"model.layers.{i}."
        candidates += [prefix + part for part in (
            "input_layernorm.weight", "post_attention_layernorm.weight",
            "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
            "self_attn.o_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.bias",
            "self_attn.v_proj.bias", "mlp.gate_proj.weight", "mlp.up_proj.weight",
            "mlp.down_proj.weight")]
    return {names.get_name(hf, try_suffixes=(".weight", ".bias")): hf for hf in candidates}
