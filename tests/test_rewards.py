import os
import socket
import threading

import pytest

from factory import rewards
from factory.config import ProjectConfig
from factory.rewards import sandbox


def build(**spec):
    return rewards.build([{"name": "r", "weight": 1.0, **spec}])["r"]


def test_syntax_and_json_and_format_rewards():
    syntax = build(type="syntax_valid")
    assert syntax("```python\ndef f(x):\n    return x\n```", {}) == 1.0
    assert syntax("```python\ndef f(x)\n    return x\n```", {}) == 0.0
    assert syntax("", {}) == 0.0
    assert build(type="json_valid")('```json\n{"a": 1}\n```', {}) == 1.0
    assert build(type="json_valid")("{'a': 1}", {}) == 0.0
    fmt = build(type="format_regex", pattern=r"<think>.*</think>\s*\S.*", fullmatch=True)
    assert fmt("<think>why</think> answer", {}) == 1.0
    assert fmt("answer <think>why</think>", {}) == 0.0


def test_code_executes_runs_in_the_sandbox():
    run = build(type="code_executes", timeout_s=5, memory_mb=256)
    assert run("```python\nprint(sum(range(5)))\n```", {}) == 1.0
    assert run("```python\nraise SystemExit(3)\n```", {}) == 0.0
    assert run("```python\nopen('/tmp/owned-by-a-model', 'w')\n```", {}) == 0.0
    assert not os.path.exists("/tmp/owned-by-a-model")


def test_tool_call_valid_is_the_share_of_valid_calls():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}}}]
    reward = build(type="tool_call_valid")
    both = ("<start_function_call>call:f{a:1}<end_function_call>"
            "<start_function_call>call:f{b:1}<end_function_call>")
    assert reward(both, {"tools": tools}) == 0.5
    assert reward("no call", {"tools": tools}) == 0.0


def test_sandbox_times_out_an_infinite_loop():
    result = sandbox.run_python("while True:\n    pass\n", timeout_s=1)
    assert result.timed_out and not result.ok


def test_sandbox_refuses_the_network():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    code = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "print('connected')\n")
    result = sandbox.run_python(code, timeout_s=5)
    server.close()
    assert not result.ok and "connected" not in result.stdout and not accepted


def test_sandbox_writes_only_inside_its_temp_dir(tmp_path):
    target = tmp_path / "outside.txt"
    result = sandbox.run_python(f"open({str(target)!r}, 'w').write('x')\n")
    assert not result.ok and "PermissionError" in result.stderr and not target.exists()
    inside = sandbox.run_python("open('here.txt', 'w').write('ok')\nprint(open('here.txt').read())")
    assert inside.ok and inside.stdout == "ok\n"
    deleted = sandbox.run_python(f"import os\nos.remove({str(tmp_path)!r} + '/x')\n")
    assert not deleted.ok


def test_sandbox_sees_no_secrets_and_no_project(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    secret = tmp_path / "training-config.json"
    secret.write_text("{}")
    result = sandbox.run_python(
        "import os\nprint(sorted(os.environ))\n"
        f"print(open({str(secret)!r}).read())\n")
    assert "HF_TOKEN" not in result.stdout and not result.ok
    assert "PermissionError" in result.stderr


def test_sandbox_memory_limit():
    result = sandbox.run_python("x = bytearray(1024 * 1024 * 1024)\n", memory_mb=128)
    assert not result.ok and "MemoryError" in result.stderr


def test_reward_config_is_checked():
    base = {"name": "p", "model": {"name": "m"}}
    with pytest.raises(ValueError, match="pattern"):
        ProjectConfig.model_validate({**base, "rewards": [{"name": "f", "type": "format_regex"}]})
    with pytest.raises(ValueError, match="not a valid regular expression"):
        ProjectConfig.model_validate({**base, "rewards": [
            {"name": "f", "type": "format_regex", "pattern": "("}]})
    with pytest.raises(ValueError, match="unknown reward:g"):
        ProjectConfig.model_validate({**base, "eval": {"metrics": ["loss", "exact_match",
                                                                   "reward:g"]}})
    ok = ProjectConfig.model_validate({**base, "rewards": [{"name": "g", "type": "json_valid"}],
                                       "eval": {"metrics": ["exact_match", "loss", "reward:g"],
                                                "primary_metric": "reward:g"}})
    assert ok.eval.primary_metric == "reward:g"
    with pytest.raises(ValueError, match="must also be listed in eval.metrics"):
        ProjectConfig.model_validate({**base, "eval": {"metrics": ["exact_match"]}})


# --- rewards as GRPO sees them -----------------------------------------------------------

FG_CALL = "<start_function_call>call:f{a:<escape>x<escape>}<end_function_call>"


def test_reference_match_compares_calls_as_calls_and_text_normalised():
    match = build(type="reference_match")
    assert match(FG_CALL, {"reference": FG_CALL}) == 1.0
    assert match('<tool_call>{"name": "f", "arguments": {"a": "x"}}</tool_call>',
                 {"reference": FG_CALL}) == 1.0
    assert match(FG_CALL.replace("x", "y"), {"reference": FG_CALL}) == 0.0
    assert match("  Paris. ", {"reference": "paris"}) == 1.0
    assert match("anything", {"reference": ""}) == 0.0


def test_trl_reward_functions_take_the_trainers_arguments():
    specs = [{"name": "answer", "type": "reference_match", "weight": 2.0},
             {"name": "json", "type": "json_valid", "weight": 0.5}]
    funcs, weights = rewards.for_trl(specs, ["answer"])
    assert [f.__name__ for f in funcs] == ["answer"] and weights == [2.0]
    funcs, weights = rewards.for_trl(specs)
    completions = [[{"role": "assistant", "content": FG_CALL}],
                   [{"role": "assistant", "content": "{}"}]]
    scores = funcs[0]([[{"role": "user", "content": "q"}]] * 2, completions,
                      answer=[FG_CALL, FG_CALL], completion_ids=[[1], [2]], trainer_state=None)
    assert scores == [1.0, 0.0]
    assert funcs[1](["q", "q"], ["{}", "no"]) == [1.0, 0.0]  # plain-text completions too
    rewards.preflight(funcs, {"prompt": [{"role": "user", "content": "q"}], "answer": FG_CALL})


def test_preflight_names_a_reward_that_breaks_the_contract():
    def short(prompts, completions, **kw):
        return [1.0]

    def boom(prompts, completions, **kw):
        raise KeyError("tests")
    row = {"prompt": [{"role": "user", "content": "q"}]}
    with pytest.raises(ValueError, match="reward short must return one finite float"):
        rewards.preflight([short], row)
    with pytest.raises(ValueError, match="reward boom raised KeyError"):
        rewards.preflight([boom], row)


def test_grpo_config_is_checked_before_any_weights_load():
    base = {"name": "p", "model": {"name": "m"},
            "rewards": [{"name": "answer", "type": "reference_match"}]}
    grpo = {"method": "grpo", "batch_size": 3, "gradient_accumulation_steps": 2,
            "grpo": {"num_generations": 4}}
    with pytest.raises(ValueError, match=r"= 6 completions must be divisible by .* = 4; valid "
                                         r"num_generations for this batch: \[2, 3, 6\]"):
        ProjectConfig.model_validate({**base, "training": grpo})
    ok = {**grpo, "grpo": {"num_generations": 3}}
    assert ProjectConfig.model_validate({**base, "training": ok}).training.grpo.num_generations == 3
    with pytest.raises(ValueError, match="needs at least one entry in rewards"):
        ProjectConfig.model_validate({**base, "rewards": [], "training": ok})
    with pytest.raises(ValueError, match="no reward named nope"):
        ProjectConfig.model_validate({**base, "training": {**ok, "grpo": {
            "num_generations": 3, "rewards": ["nope"]}}})
