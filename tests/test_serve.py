"""`factory serve`: the OpenAI-compatible endpoint, run for real on a tiny untrained model.

The tiny model is random, so it never writes a function call; how calls in generated text become
OpenAI tool_calls is tested on the response builder directly (the e2e test on the trained demo
model sees it end to end).
"""
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from factory import registry
from factory.errors import FactoryError
from factory.project import Project
from factory.runtime import openai_api, serving
from serve_client import ask, reassemble, request, running, start, stop, stream

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "fastapi", "uvicorn")
CALL = "<start_function_call>call:get_weather{city:<escape>Paris<escape>,days:2}" \
       "<end_function_call>"
HELLO = [{"role": "user", "content": "what is the weather in Paris?"}]


# --- fixtures ------------------------------------------------------------------------------------

def make_project(root: Path) -> Project:
    root.mkdir(parents=True)
    shutil.copy(ROOT / "project_template" / "training-config.json", root)
    return Project.open(root)


def promote(project: Project, promotion: str, outputs: dict[str, Path]) -> None:
    """Record a promotion whose outputs are the given folders (copied into models/deployed/)."""
    for name, source in outputs.items():
        target = project.deployed_dir / promotion / name
        shutil.copytree(source, target) if source.is_dir() else target.mkdir(parents=True)
    book = registry.read(project)
    book["promotions"].append({"id": promotion, "checkpoint_hash": "0" * 64,
                               "promoted_at": "2026-01-01T00:00:00Z",
                               "outputs": {n: f"models/deployed/{promotion}/{n}"
                                           for n in outputs}})
    book["current"] = promotion
    registry.write(project, book)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from factory import demo_data, tiny_model

    out = tmp_path_factory.mktemp("serve-model") / "tiny"
    tiny_model.build_tiny_model(out, demo_data.corpus(demo_data.demo_records(200)), seed=0)
    return out


@pytest.fixture(scope="module")
def local_model(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model).eval(), \
        AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def promoted(tmp_path_factory, tiny_model) -> Project:
    project = make_project(tmp_path_factory.mktemp("serve") / "proj")
    promote(project, "v1-test", {"merged": tiny_model})
    return project


@pytest.fixture(scope="module")
def server(promoted):
    with running(project=promoted.root, logs=promoted.root) as live:
        yield live


@pytest.fixture
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


# --- the response builder ------------------------------------------------------------------------

def generated(text: str, finish: str = "stop") -> openai_api.Generated:
    return openai_api.Generated(text, prompt_tokens=7, completion_tokens=5, finish=finish)


def test_plain_text_is_an_openai_chat_completion():
    body = openai_api.completion_body(generated("It is sunny."), "m", completion_id="chatcmpl-x",
                                      created=1)
    assert body == {"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "It is sunny."}}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}}


def test_a_functiongemma_call_becomes_tool_calls():
    body = openai_api.completion_body(generated("Let me look." + CALL), "m")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look."
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "days": 2}
    only_calls = openai_api.completion_body(generated(CALL + CALL), "m")["choices"][0]["message"]
    assert only_calls["content"] is None and len(only_calls["tool_calls"]) == 2
    assert len({c["id"] for c in only_calls["tool_calls"]}) == 2


def test_a_cut_off_call_stays_text_and_the_budget_says_length():
    cut = CALL[:30]
    choice = openai_api.completion_body(generated(cut, "length"), "m")["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": cut}
    assert choice["finish_reason"] == "length"


def test_stream_chunks_add_up_to_the_completion():
    body = openai_api.completion_body(generated("Let me  look\nnow." + CALL), "m")
    chunks = list(openai_api.stream_chunks(body, include_usage=True))
    assert {c["id"] for c in chunks} == {body["id"]}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1] == {"id": body["id"], "object": "chat.completion.chunk",
                          "created": body["created"], "model": "m", "choices": [],
                          "usage": body["usage"]}
    assert reassemble(chunks[:-1]) == {"message": body["choices"][0]["message"],
                                       "finish_reason": "tool_calls"}


# --- the request, rendered as training rendered it ---------------------------------------------

def test_returned_tool_calls_are_rendered_back_as_the_model_wrote_them():
    request = openai_api.ChatRequest(messages=[
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        *HELLO,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {
                "name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}])
    messages, tools = openai_api.conversation(request, openai_api.request_style("keep"))
    assert tools is None
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[2] == {"role": "assistant", "content": CALL}
    assert messages[3]["role"] == "tool" and messages[3]["content"] == "sunny"
    # A model trained on OpenAI-style calls sees them as its chat template renders them.
    messages, _ = openai_api.conversation(request, openai_api.request_style("openai"))
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris", "days": 2}


def test_tools_are_passed_to_the_chat_template(local_model):
    _, tokenizer = local_model
    seen = {}
    tools = [{"type": "function", "function": {"name": "get_weather",
                                               "parameters": {"type": "object"}}}]
    request = openai_api.ChatRequest(messages=HELLO, tools=tools)

    class Spy:
        def apply_chat_template(self, messages, **options):
            seen.update(options)
            return tokenizer.apply_chat_template(messages, **options)

    prompt = serving.render(Spy(), *openai_api.conversation(request, "functiongemma"))
    assert seen["tools"] == tools and seen["add_generation_prompt"] is True
    assert prompt == tokenizer.apply_chat_template(HELLO, tokenize=False,
                                                   add_generation_prompt=True)


# --- what to serve ------------------------------------------------------------------------------

def test_resolve_prefers_merged_then_the_adapter(tmp_path, tiny_model):
    project = make_project(tmp_path / "p")
    with pytest.raises(FactoryError) as nothing:
        serving.resolve(project.root)
    assert nothing.value.code == "E_SERVE" and "--model" in nothing.value.hint
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    promote(project, "v1-a", {"adapter": adapter})
    promote(project, "v2-b", {"adapter": adapter, "merged": tiny_model})
    target = serving.resolve(project.root)
    assert (target.model_id, target.weights) == ("v2-b", project.deployed_dir / "v2-b/merged")
    target = serving.resolve(project.root, promotion="v1-a")
    assert target.weights == project.deployed_dir / "v1-a/adapter"
    assert target.base["source"] == "Qwen/Qwen2.5-0.5B-Instruct"  # the project's base model
    promote(project, "v3-c", {"gguf": tmp_path / "none"})
    for kwargs, code in [({}, "E_SERVE"), ({"promotion": "v9"}, "E_NO_PROMOTION"),
                         ({"promotion": "v1-a", "model": "x"}, "E_USAGE"),
                         ({"model": "../outside"}, "E_PATH_ESCAPE"),
                         ({"model": "data"}, "E_SERVE")]:
        with pytest.raises(FactoryError) as refused:
            serving.resolve(project.root, **kwargs)
        assert refused.value.code == code, kwargs


def test_resolve_a_model_folder_inside_or_outside_a_project(tmp_path, tiny_model):
    project = make_project(tmp_path / "p")
    shutil.copytree(tiny_model, project.root / "models" / "mine")
    inside = serving.resolve(project.root, model="models/mine")
    assert (inside.model_id, inside.weights) == ("mine", project.root / "models" / "mine")
    alone = serving.resolve(tmp_path, model=str(tiny_model))  # tmp_path is no project
    assert alone.weights == tiny_model and alone.base["source"] == str(tiny_model)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(FactoryError) as orphan:  # whose base model? only a project says
        serving.resolve(tmp_path, model=str(adapter))
    assert orphan.value.code == "E_SERVE" and "-C" in orphan.value.hint


def test_an_adapter_promotion_is_loaded_on_the_projects_base_model(tmp_path, tiny_model,
                                                                     local_model):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    base, tokenizer = local_model
    project = make_project(tmp_path / "p")
    shutil.copytree(tiny_model, project.root / "models" / "base")
    config = json.loads(project.config_file.read_text())
    config["model"]["name"] = "models/base"
    project.config_file.write_text(json.dumps(config))
    lora = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                               peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    lora.save_pretrained(tmp_path / "adapter")
    tokenizer.save_pretrained(tmp_path / "adapter")
    promote(project, "v1-a", {"adapter": tmp_path / "adapter"})
    model, loaded_tokenizer = serving.load(serving.resolve(project.root))
    assert isinstance(model, peft.PeftModel)
    prompt = tokenizer.apply_chat_template(HELLO, tokenize=False, add_generation_prompt=True)
    greedy = serving.Sampling(max_new_tokens=8)
    # A fresh LoRA is a no-op (its B matrices are zero): the adapter answers as its base does.
    assert serving.generate(model, loaded_tokenizer, prompt, greedy) == \
        serving.generate(base, tokenizer, prompt, greedy)


def test_only_loopback_binds_quietly():
    assert [serving.exposure_warning(h) for h in serving.LOOPBACK] == [None] * 3
    assert "no authentication" in serving.exposure_warning("0.0.0.0")


def test_no_promotion_is_E_SERVE_without_loading_anything(tmp_path):
    project = make_project(tmp_path / "p")
    probe = (f"import sys, json\nfrom factory.cli import main\n"
             f"rc = main(['-C', {str(project.root)!r}, 'serve', '--json'])\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)\n"
             f"sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.returncode == 2
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []
    out = json.loads(proc.stdout)
    assert out["error"]["code"] == "E_SERVE" and "--model" in out["next"]["reason"]


def test_a_taken_port_is_E_SERVE_before_the_model_loads(promoted):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = subprocess.run([sys.executable, "-m", "factory.cli", "-C", str(promoted.root),
                               "serve", "--port", port, "--json"], capture_output=True, text=True,
                              timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["error"]["code"] == "E_SERVE"


# --- the real server ------------------------------------------------------------------------------

def test_models_and_health(server):
    assert server.model_id == "v1-test"
    status, listed = request(server.base_url, "/models")
    assert status == 200 and listed["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in listed["data"]] == [
        ("v1-test", "model", "model-factory")]
    assert request(server.base_url.removesuffix("/v1"), "/health") == (
        200, {"status": "ok", "model": "v1-test"})


def test_a_chat_completion_through_the_openai_client(client, server, local_model):
    _, tokenizer = local_model
    answer = client.chat.completions.create(model="v1-test", messages=HELLO, max_tokens=12)
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.model == "v1-test" and len(answer.choices) == 1
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    prompt = tokenizer.apply_chat_template(HELLO, tokenize=False, add_generation_prompt=True)
    usage = answer.usage
    assert usage.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert 0 < usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if choice.finish_reason == "length":
        assert usage.completion_tokens == 12


def test_greedy_answers_repeat_and_equal_what_evaluate_scores(server, local_model):
    from factory.runtime import scoring

    model, tokenizer = local_model
    first = ask(server.base_url, HELLO, max_tokens=16)
    again = ask(server.base_url, HELLO, max_tokens=16, temperature=0)
    assert first["choices"] == again["choices"]
    expected = scoring.greedy_answer(model, tokenizer, HELLO + [{"role": "assistant",
                                                                 "content": ""}], 16)
    assert first["choices"][0]["message"]["content"] == (expected or None)


def test_seeded_sampling_repeats(server):
    runs = [ask(server.base_url, HELLO, max_tokens=16, temperature=1.0, seed=3)
            for _ in range(2)]
    assert runs[0]["choices"] == runs[1]["choices"]


def test_a_stop_sequence_ends_the_answer_before_it(server):
    whole = ask(server.base_url, HELLO, max_tokens=16)["choices"][0]["message"]["content"]
    stop = whole[len(whole) // 2:][:3]
    [choice] = ask(server.base_url, HELLO, max_tokens=16, stop=[stop])["choices"]
    assert choice["message"]["content"] == whole[:whole.find(stop)].strip()
    assert choice["finish_reason"] == "stop"


def test_a_stream_adds_up_to_the_same_answer(client, server):
    whole = ask(server.base_url, HELLO, max_tokens=16)
    chunks = stream(server.base_url, HELLO, max_tokens=16,
                    stream_options={"include_usage": True})
    assert chunks[-1]["usage"] == whole["usage"]
    assert reassemble(chunks) == {"message": whole["choices"][0]["message"],
                                  "finish_reason": whole["choices"][0]["finish_reason"]}
    pieces = client.chat.completions.create(model="v1-test", messages=HELLO, max_tokens=16,
                                            stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
    assert text == whole["choices"][0]["message"]["content"]


@pytest.mark.parametrize("change, status, param", [
    ({"n": 2}, 400, "n"),
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
    ({"messages": HELLO + [{"role": "assistant", "content": "x"}]}, 400, "messages.1.role"),
    ({"messages": [*HELLO, {"role": "assistant", "tool_calls": [{"type": "function", "function": {
        "name": "f", "arguments": "{not json"}}]}, {"role": "tool", "content": "r"}]},
     400, "messages.1.tool_calls.0.function.arguments"),
    ({"temperature": 3}, 400, "temperature"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"logit_bias": {"1": 5}}, 400, "logit_bias"),
    ({"model": "gpt-4o"}, 404, "model"),
    ({"messages": [{"role": "user", "content": "weather " * 300}]}, 400, "messages"),
])
def test_bad_requests_get_openai_errors(server, change, status, param):
    got, body = request(server.base_url, "/chat/completions", {"messages": HELLO, **change})
    assert got == status, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param and body["error"]["type"] == "invalid_request_error"


def test_the_openai_client_raises_bad_request(client):
    import openai

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="v1-test", messages=HELLO, n=2)
    assert refused.value.body["param"] == "n"


def test_it_listens_on_127_0_0_1_only(server):
    port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
    assert server.base_url == f"http://127.0.0.1:{port}/v1"
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if Path(table).exists():
            for row in Path(table).read_text().splitlines()[1:]:
                local, state = row.split()[1], row.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    listening.append(local.rsplit(":", 1)[0])
    assert listening in ([], ["0100007F"])  # 127.0.0.1, little-endian hex; /proc may be absent
    with pytest.raises(ConnectionRefusedError), socket.socket() as other:
        other.connect(("127.0.0.2", port))  # the rest of 127/8 reaches this host, not the server


def test_concurrent_requests_each_get_the_greedy_answer(server):
    expected = ask(server.base_url, HELLO, max_tokens=16)["choices"][0]["message"]
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(
        ask(server.base_url, HELLO, max_tokens=16)["choices"][0]["message"])) for _ in range(4)]
    for thread in threads:
        thread.start()
    assert request(server.base_url.removesuffix("/v1"), "/health")[0] == 200
    for thread in threads:
        thread.join(60)
    assert answers == [expected] * 4


def test_a_model_folder_is_served_and_stops_cleanly(tmp_path, tiny_model):
    live = start(["--model", str(tiny_model), "--max-new-tokens", "4"], cwd=tmp_path,
                 logs=tmp_path)
    try:
        assert live.model_id == "tiny"
        answer = ask(live.base_url, HELLO, max_tokens=50)
        assert answer["usage"]["completion_tokens"] <= 4  # the server's cap wins
    finally:
        rc = stop(live, signal.SIGINT)
    assert rc == 0, live.stderr.read_text()
    result = json.loads(live.stdout.read_text())["result"]
    assert result["stopped_by"] == "SIGINT" and result["url"] == live.base_url
