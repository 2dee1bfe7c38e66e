"""Ollama Modelfile: its TEMPLATE, run by a real Go text/template engine, renders as Jinja does."""
import json
import subprocess
import sys

import pytest

from factory.runtime import ollama
from factory.runtime.report import ScriptError

LLAMA3 = (
    "{{- bos_token }}{%- for m in messages %}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] + "
    "'<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}")
# Gemma's shape: no system role, the model's turns are called "model".
GEMMA = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + m['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")
# Renders the last user message differently from earlier ones: no fixed wrapper exists.
LAST_SPECIAL = (
    "{% for m in messages %}{% if loop.last and m['role'] == 'user' %}[LAST]{{ m['content'] }}"
    "{% else %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}")
CONVERSATIONS = [
    [{"role": "user", "content": "Weather in {{Paris}}?\nIn celsius."}],
    [{"role": "system", "content": "You call tools."},
     {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
     {"role": "user", "content": "again"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
     {"role": "tool", "content": "{\"temp\": 21}"}],
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from factory.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("ollama-model")
    build_tiny_model(out, ["hello world <|im_start|>user\nhi<|im_end|>"] * 40)
    return AutoTokenizer.from_pretrained(out)


def with_template(tokenizer, template, bos="<|begin_of_text|>"):
    clone = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    clone.chat_template = template
    clone.add_special_tokens({"bos_token": bos})
    return clone


def go_render(template: str, messages: list[dict], tmp_path) -> str:
    """Render with Go's own text/template (the go-template package wraps it)."""
    (tmp_path / "t.tmpl").write_text(template)
    values = {"Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
    (tmp_path / "v.yml").write_text(json.dumps(values))  # JSON is YAML
    code = ("from go_template.wrapper import render_template as r; "
            f"r({str(tmp_path / 't.tmpl')!r}, {str(tmp_path / 'v.yml')!r}, "
            f"{str(tmp_path / 'out.txt')!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]  # Go panics abort: hence a subprocess
    return (tmp_path / "out.txt").read_text()


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_the_go_template_renders_what_the_chat_template_renders(tokenizer, tmp_path,
                                                                conversation):
    wrappers = ollama.measure(tokenizer)
    assert ollama.verify(tokenizer, wrappers) == 8
    expected = tokenizer.apply_chat_template(conversation, tokenize=False,
                                             add_generation_prompt=True)
    assert go_render(ollama.go_template(wrappers), conversation, tmp_path) == expected


def test_stop_tokens_come_from_the_tokenizer(tokenizer):
    wrappers = ollama.measure(tokenizer)
    assert wrappers.stops == ["<|im_end|>", "<|im_start|>user"]
    text = ollama.modelfile("../gguf/m-Q8_0.gguf", ollama.go_template(wrappers),
                            wrappers.stops, "Be brief.", {"temperature": 0.0, "num_ctx": 256})
    lines = text.splitlines()
    assert "FROM ../gguf/m-Q8_0.gguf" in lines and 'SYSTEM """Be brief."""' in lines
    assert {"PARAMETER temperature 0.0", "PARAMETER num_ctx 256",
            'PARAMETER stop "<|im_end|>"'} <= set(lines)


def test_a_template_with_a_bos_token_drops_it_for_llama_cpp(tokenizer, tmp_path):
    clone = with_template(tokenizer, LLAMA3)
    wrappers = ollama.measure(clone)
    assert ollama.verify(clone, wrappers) == 8
    assert wrappers.preamble == "<|begin_of_text|>"
    assert wrappers.stops == ["<|eot_id|>", "<|start_header_id|>user<|end_header_id|>",
                              "<|im_end|>"]
    runtime = ollama.without_bos(wrappers, clone.bos_token)
    rendered = go_render(ollama.go_template(runtime), CONVERSATIONS[1], tmp_path)
    expected = clone.apply_chat_template(CONVERSATIONS[1], tokenize=False,
                                         add_generation_prompt=True)
    assert "<|begin_of_text|>" + rendered == expected, "exactly one BOS, added by the runtime"


def test_a_template_without_a_system_role_offers_none(tokenizer, tmp_path):
    clone = with_template(tokenizer, GEMMA, bos="<bos>")
    wrappers = ollama.measure(clone)
    assert "system" not in wrappers.around
    assert wrappers.around["assistant"] == ("<start_of_turn>model\n", "<end_of_turn>\n")
    ollama.verify(clone, wrappers)
    conversation = CONVERSATIONS[0][:1] + [{"role": "assistant", "content": "sunny"},
                                           {"role": "user", "content": "thanks"}]
    assert go_render(ollama.go_template(wrappers), conversation, tmp_path) == \
        clone.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)


def test_a_template_that_cannot_be_measured_is_refused(tokenizer):
    clone = with_template(tokenizer, LAST_SPECIAL)
    with pytest.raises(ScriptError) as caught:
        ollama.verify(clone, ollama.measure(clone))
    assert caught.value.code == "E_EXPORT" and "deploy.ollama.template" in caught.value.hint


def test_text_that_would_end_a_modelfile_block_is_refused():
    with pytest.raises(ScriptError):
        ollama.check_literal('say """hi"""', "the system")


def test_create_says_what_to_run_when_ollama_is_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    done = ollama.create("demo", tmp_path / "Modelfile")
    assert done == {"command": f"ollama create demo -f {tmp_path / 'Modelfile'}", "ran": False,
                    "reason": "no ollama binary on PATH"}


def test_create_runs_ollama_when_it_is_on_path(tmp_path, monkeypatch):
    # A stand-in binary: it records its arguments and insists the Modelfile exists, as ollama does.
    fake = tmp_path / "bin" / "ollama"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\n[ -f "$4" ] || { echo "no Modelfile" >&2; exit 1; }\n'
                    f'echo "$@" > {tmp_path / "args"}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    modelfile = tmp_path / "Modelfile"
    with pytest.raises(ScriptError) as caught:
        ollama.create("demo", modelfile)
    assert "no Modelfile" in caught.value.message
    modelfile.write_text("FROM x.gguf\n")
    assert ollama.create("demo", modelfile)["ran"] is True
    assert (tmp_path / "args").read_text().split() == ["create", "demo", "-f", str(modelfile)]
