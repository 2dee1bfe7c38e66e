"""GGUF export: written with the gguf package, read back, and (where installed) run by llama.cpp."""
import json
import shutil

import pytest

from factory.runtime import gguf_check, gguf_export
from factory.runtime.report import ScriptError

CORPUS = ["<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n",
          "<start_function_call>call:get_weather{city:<escape>Paris<escape>}"
          "<end_function_call>", "hello world, the quick brown fox jumps"] * 40
PROBES = [[{"role": "user", "content": q}, {"role": "assistant", "content": ""}]
          for q in ("What is the weather in Paris?", "hello world", "the quick fox")]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny Llama, and a tiny Qwen2 (biases, no rope permutation) with its tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from factory.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("gguf-models")
    build_tiny_model(out / "llama", CORPUS)
    tokenizer = AutoTokenizer.from_pretrained(out / "llama")
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, tie_word_embeddings=False,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    qwen = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for name, param in qwen.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.1)  # zero biases would hide a lost bias
            elif param.dim() == 2:
                param.normal_(0, 0.08)
    qwen.save_pretrained(out / "qwen2")
    tokenizer.save_pretrained(out / "qwen2")
    return out


def answers(model, tokenizer):
    from factory.runtime import scoring

    return [scoring.greedy_answer(model, tokenizer, p, 12) for p in PROBES]


def original(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_an_f32_file_reads_back_to_the_same_model(models, tmp_path, arch):
    from transformers import AutoConfig

    folder = models / arch
    path = tmp_path / "m.gguf"
    written = gguf_export.write(folder, path, "F32", "tiny")
    assert written["architecture"] == arch and path.read_bytes()[:4] == b"GGUF"
    model, tokenizer = original(folder)
    read = gguf_export.read_back(path, AutoConfig.from_pretrained(folder))
    vocab = gguf_export.vocabulary(tokenizer, model.config.vocab_size, folder / "tokenizer.json")
    assert gguf_check.metadata_problems(read, vocab) == []
    problems, worst = gguf_check.tensor_problems(read, model.state_dict())
    assert problems == [] and worst == 0.0
    assert answers(gguf_check.model_from(read, folder), tokenizer) == answers(model, tokenizer)


def test_the_file_carries_every_token_the_template_and_the_stop_token(models, tmp_path):
    from transformers import AutoConfig

    folder = models / "llama"
    path = tmp_path / "m.gguf"
    gguf_export.write(folder, path, "Q8_0", "tiny")
    meta = gguf_export.read_back(path, AutoConfig.from_pretrained(folder)).metadata
    _, tokenizer = original(folder)
    tokens = meta["tokenizer.ggml.tokens"]
    for added in ("<|im_start|>", "<|im_end|>", "<start_function_call>", "<escape>"):
        i = tokenizer.convert_tokens_to_ids(added)
        assert tokens[i] == added
        assert meta["tokenizer.ggml.token_type"][i] == (
            gguf_export.TOKEN_CONTROL if added.startswith("<|") else
            gguf_export.TOKEN_USER_DEFINED)
    assert meta["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    assert meta["tokenizer.ggml.pre"] == "gpt-2" and meta["tokenizer.ggml.add_bos_token"] is False
    template = meta["tokenizer.chat_template"]
    assert "endgeneration" not in template, "transformers' training-only tag is not portable"
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    import jinja2

    rendered = jinja2.Environment().from_string(template).render(messages=conversation,
                                                                 add_generation_prompt=False)
    assert rendered == tokenizer.apply_chat_template(conversation, tokenize=False)


@pytest.mark.parametrize("quant,bound", [("F16", 1e-3), ("Q8_0", 1e-2), ("Q4_0", 0.15)])
def test_quantized_tensors_stay_within_their_types_error(models, tmp_path, quant, bound):
    from transformers import AutoConfig

    folder = models / "llama"
    path = tmp_path / "m.gguf"
    written = gguf_export.write(folder, path, quant, "tiny")
    read = gguf_export.read_back(path, AutoConfig.from_pretrained(folder))
    model, _ = original(folder)
    problems, worst = gguf_check.tensor_problems(read, model.state_dict())
    assert problems == [] and 0 < worst <= bound
    assert written["tensor_types"][quant] == 16, "every 2-D weight is quantized"
    assert written["tensor_types"]["F32"] == 5, "norms stay F32"


def test_a_lost_tensor_or_a_wrong_token_is_found(models, tmp_path):
    from transformers import AutoConfig

    folder = models / "llama"
    path = tmp_path / "m.gguf"
    gguf_export.write(folder, path, "F32", "tiny")
    model, tokenizer = original(folder)
    read = gguf_export.read_back(path, AutoConfig.from_pretrained(folder))
    del read.tensors["model.layers.1.mlp.up_proj.weight"]
    read.metadata["tokenizer.ggml.tokens"][3] = "<wrong>"
    vocab = gguf_export.vocabulary(tokenizer, model.config.vocab_size, folder / "tokenizer.json")
    assert gguf_check.metadata_problems(read, vocab) == [
        "tokenizer.ggml.tokens differs from the training tokenizer's tokens"]
    problems, _ = gguf_check.tensor_problems(read, model.state_dict())
    assert problems == ["tensor model.layers.1.mlp.up_proj.weight is missing"]


def test_an_unknown_pre_tokenizer_is_refused_not_guessed(models, tmp_path):
    folder = tmp_path / "odd"
    shutil.copytree(models / "llama", folder)
    data = json.loads((folder / "tokenizer.json").read_text())
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\d+|\w+"}, "behavior": "Isolated",
         "invert": False}, {"type": "ByteLevel", "add_prefix_space": False,
                            "trim_offsets": True, "use_regex": False}]}
    (folder / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ScriptError) as caught:
        gguf_export.write(folder, tmp_path / "m.gguf", "F16", "tiny")
    assert caught.value.code == "E_EXPORT" and "pre-tokenizer" in caught.value.message
    assert not (tmp_path / "m.gguf").exists()


def test_k_quants_need_llama_cpp(models, tmp_path):
    path = tmp_path / "m.gguf"
    if gguf_check.llama_cpp_available():
        written = gguf_export.write(models / "llama", path, "Q4_K_M", "tiny")
        assert written["quantizer"] == "llama.cpp" and "F32" in written["tensor_types"]
        assert set(written["tensor_types"]) - {"F32"}, "llama.cpp quantized the weights"
    else:
        with pytest.raises(ScriptError) as caught:
            gguf_export.write(models / "llama", path, "Q4_K_M", "tiny")
        assert caught.value.code == "E_EXPORT" and "llama-cpp-python" in caught.value.message


@pytest.mark.skipif(not gguf_check.llama_cpp_available(),
                    reason="llama-cpp-python is not installed (`make setup-llama`)")
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_llama_cpp_runs_the_file_like_transformers(models, tmp_path, arch):
    folder = models / arch
    path = tmp_path / "m.gguf"
    gguf_export.write(folder, path, "F32", "tiny")
    model, tokenizer = original(folder)
    got, mismatched = gguf_check.llama_cpp_answers(path, tokenizer, PROBES, 12, add_bos=False)
    assert mismatched == 0, "llama.cpp tokenizes the prompts exactly as transformers does"
    assert got == answers(model, tokenizer)
