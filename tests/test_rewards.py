import json
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


# --- code against tests, and the context every reward sees -------------------------------------

ADD = "```python\ndef add(a, b):\n    return a + b\n```"
ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"


def test_code_executes_runs_the_examples_tests_after_the_answer():
    run = build(type="code_executes", timeout_s=5, memory_mb=256)
    assert run(ADD, {"tests": ADD_TESTS}) == 1.0
    assert run(ADD.replace("a + b", "a - b"), {"tests": ADD_TESTS}) == 0.0
    assert run(ADD.replace("a + b", "a - b"), {}) == 1.0  # no tests: running is enough
    # Exiting 0 before the tests run is not passing them.
    assert run("import sys\nsys.exit(0)", {"tests": ADD_TESTS}) == 0.0
    assert run("import os\nos._exit(0)", {"tests": ADD_TESTS}) == 0.0


def test_context_of_reads_eval_rows_and_training_rows_alike():
    tools = [{"type": "function", "function": {"name": "f"}}]
    eval_row = {"id": "e1", "messages": [{"role": "user", "content": "add"},
                                         {"role": "assistant", "content": " def add... "}],
                "tools": tools, "meta": {"tests": ["assert add(1, 2) == 3", "assert True"]}}
    context = rewards.context_of(eval_row)
    assert context["reference"] == "def add..." and context["tools"] == tools
    assert context["tests"] == "assert add(1, 2) == 3\nassert True"
    assert context["messages"] == eval_row["messages"][:1]
    grpo_row = {"id": "g1", "prompt": [{"role": "user", "content": "q"}], "answer": "a",
                "tests": "assert 1", "meta": {"tests": "ignored: the top level wins"}}
    context = rewards.context_of(grpo_row)
    assert (context["reference"], context["tests"], context["tools"]) == ("a", "assert 1", None)
    assert context["messages"] == grpo_row["prompt"]
    assert rewards.context_of({"prompt": "plain"})["messages"] == [
        {"role": "user", "content": "plain"}]
    with pytest.raises(ValueError, match="row x: tests must be Python code"):
        rewards.context_of({"id": "x", "prompt": "q", "meta": {"tests": 3}})


def test_example_scores_gives_rewards_the_records_tests(tmp_path):
    from factory.runtime import scoring

    record = {"id": "e1", "messages": [{"role": "user", "content": "q"},
                                       {"role": "assistant", "content": "ref"}],
              "meta": {"tests": "assert f() == 1"}}
    seen = []
    got = scoring.example_scores("ans", record, ["exact_match", "reward:spy"],
                                 {"spy": lambda a, c: seen.append(c) or 0.5})
    assert got["reward:spy"] == 0.5 and got["exact_match"] == 0.0
    assert seen[0]["tests"] == "assert f() == 1" and seen[0]["reference"] == "ref"

    def broken(answer, context):
        raise KeyError("x")
    with pytest.raises(rewards.RewardError, match=r"reward spy raised KeyError.*eval record e1"):
        scoring.example_scores("ans", record, ["reward:spy"], {"spy": broken})


# --- efficiency ----------------------------------------------------------------------------------

def test_efficiency_prefers_short_answers_and_few_calls():
    eff = build(type="efficiency", budget_tokens=4)
    assert eff("one two", {"reference": "a b c d"}) == 1.0
    assert eff("one two three four five six seven eight", {"reference": "a b c d"}) == 0.5
    assert eff("   ", {"reference": "a b"}) == 0.0
    call = "<start_function_call>call:f{a:1}<end_function_call>"
    # One call is always allowed; two where the reference makes one halves the score.
    assert eff(call, {"reference": call}) == 1.0
    assert eff(call + call, {"reference": call}) == 0.5
    assert eff(call + call, {"reference": call + call}) == 1.0
    # Without a reference: the budget sets the length; one call is free.
    assert eff("a b c", {}) == 1.0
    assert eff("a b c d e f g h", {"reference": ""}) == 0.5
    assert eff(call + " " + call, {}) == 0.5
    with pytest.raises(ValueError, match="reward r .efficiency.: .*set budget_tokens"):
        build(type="efficiency")("a b", {})


# --- learned --------------------------------------------------------------------------------------

GOOD = ["thanks for asking, here is the answer", "happy to help, the answer is below",
        "thanks, here is a clear answer", "glad to help with a clear answer"]
BAD = ["figure it out yourself", "no idea, go away", "this is a stupid question",
       "go away and figure it out"]


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def build_in(root, **spec):
    return rewards.build([{"name": "r", "weight": 1.0, **spec}], root=root)["r"]


def test_learned_reward_scores_desirable_text_above_undesirable(tmp_path):
    rows = [{"text": t, "label": True} for t in GOOD] + [{"text": t, "label": False} for t in BAD]
    rows[1] = {"prompt": [{"role": "user", "content": "q"}], "label": True,
               "completion": [{"role": "assistant", "content": GOOD[1]}]}  # KTO-shaped
    write_jsonl(tmp_path / "rewards" / "labels.jsonl", rows)
    reward = build_in(tmp_path, type="learned", examples="rewards/labels.jsonl")
    good, bad = reward("happy to help, here is the answer", {}), reward("go away, no idea", {})
    assert 0.5 < good <= 1.0 and 0.0 <= bad < 0.5
    again = build_in(tmp_path, type="learned", examples="rewards/labels.jsonl")
    assert again("happy to help, here is the answer", {}) == good  # deterministic


def test_learned_reward_refuses_files_it_cannot_learn_from(tmp_path):
    path = tmp_path / "labels.jsonl"
    spec = {"type": "learned", "examples": "labels.jsonl"}
    with pytest.raises(ValueError, match="reward r .learned.: examples: no file labels.jsonl"):
        build_in(tmp_path, **spec)
    write_jsonl(path, [{"text": "a", "label": True}, {"text": "b", "label": 1}])
    with pytest.raises(ValueError, match="labels.jsonl line 2: expected label true or false"):
        build_in(tmp_path, **spec)
    write_jsonl(path, [{"text": "a", "label": True}, "{not json"])
    with pytest.raises(ValueError, match="labels.jsonl line 2: not JSON"):
        build_in(tmp_path, **spec)
    write_jsonl(path, [{"words": "a", "label": True}])
    with pytest.raises(ValueError, match="line 1: expected .*found keys label, words"):
        build_in(tmp_path, **spec)
    write_jsonl(path, [{"text": t, "label": True} for t in GOOD[:3]])
    with pytest.raises(ValueError, match="holds 3 labelled example.s.; at least 4"):
        build_in(tmp_path, **spec)
    write_jsonl(path, [{"text": t, "label": True} for t in GOOD])
    with pytest.raises(ValueError, match="all 4 examples are labelled True"):
        build_in(tmp_path, **spec)


# --- the user's own python rewards ------------------------------------------------------------

BREVITY = '''
def reward(answer, context):
    return 1.0 / (1 + len(answer.split()))


def chatty(answer, context):
    return context.get("mode", "words")


def broken(answer, context):
    return float("nan")


def boom(answer, context):
    raise KeyError("tests")
'''


@pytest.fixture
def user_project(tmp_path):
    (tmp_path / "rewards").mkdir()
    (tmp_path / "rewards" / "brevity.py").write_text(BREVITY)
    return tmp_path


def test_python_reward_is_loaded_from_the_project(user_project):
    reward = build_in(user_project, type="python", file="rewards/brevity.py")
    assert reward("one two three", {}) == 0.25
    with pytest.raises(ValueError, match=r"reward r \(rewards/brevity.py:chatty\) must return a "
                                         r"number, returned str"):
        build_in(user_project, type="python", file="rewards/brevity.py", function="chatty")("a", {})
    with pytest.raises(ValueError, match="must return a finite number, returned nan"):
        build_in(user_project, type="python", file="rewards/brevity.py", function="broken")("a", {})
    with pytest.raises(ValueError, match="defines no function missing.answer, context."):
        build_in(user_project, type="python", file="rewards/brevity.py", function="missing")
    (user_project / "rewards" / "bad.py").write_text("import nowhere_to_be_found\n")
    with pytest.raises(ValueError, match="importing rewards/bad.py raised ModuleNotFoundError"):
        build_in(user_project, type="python", file="rewards/bad.py")


def test_reward_files_must_exist_inside_the_project(user_project, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "evil.py"
    outside.write_text(BREVITY)
    (user_project / "rewards" / "link.py").symlink_to(outside)
    for file in ("../evil.py", "rewards/link.py"):
        with pytest.raises(ValueError, match="outside the project"):
            build_in(user_project, type="python", file=file)
    with pytest.raises(ValueError, match="must be a path relative to the project"):
        build_in(user_project, type="python", file=str(outside))
    with pytest.raises(ValueError, match="no file rewards/nope.py in the project"):
        build_in(user_project, type="python", file="rewards/nope.py")
    with pytest.raises(ValueError, match="no project root was given"):
        rewards.build([{"name": "r", "type": "python", "file": "rewards/brevity.py"}])


def test_new_reward_fields_are_checked():
    base = {"name": "p", "model": {"name": "m"}}

    def check(**entry):
        return ProjectConfig.model_validate({**base, "rewards": [{"name": "r", **entry}]})
    with pytest.raises(ValueError, match="a python reward needs `file`: a .py file"):
        check(type="python", file="rewards/brevity.txt")
    with pytest.raises(ValueError, match="a learned reward needs `examples`"):
        check(type="learned")
    with pytest.raises(ValueError, match="file must be a path relative to the project"):
        check(type="python", file="rewards/../../x.py")
    with pytest.raises(ValueError, match="examples must be a path relative to the project"):
        check(type="learned", examples="/etc/labels.jsonl")
    with pytest.raises(ValueError, match="function"):
        check(type="python", file="r.py", function="not-a-name")
    with pytest.raises(ValueError, match="budget_tokens"):
        check(type="efficiency", budget_tokens=0)
    entry = check(type="python", file="rewards/brevity.py").rewards[0]
    assert entry.function == "reward" and entry.budget_tokens is None
    assert rewards.files_of([entry.model_dump(), {"name": "l", "type": "learned",
                                                  "examples": "rewards/l.jsonl"}]) == [
        "rewards/brevity.py", "rewards/l.jsonl"]


def test_scoring_fingerprint_changes_when_a_reward_file_does(user_project):
    from agents import eval_scoring
    from agents.gate import GateContext
    from factory.hashing import HashCache
    from factory.project import Project

    (user_project / "training-config.json").write_text("{}")
    config = ProjectConfig.model_validate({"name": "p", "model": {"name": "m"}, "rewards": [
        {"name": "brief", "type": "python", "file": "rewards/brevity.py"}]})
    project = Project.open(user_project)

    def fingerprint():
        return eval_scoring.fingerprint(GateContext(project, config, HashCache()))
    before = fingerprint()
    assert fingerprint() == before
    (user_project / "rewards" / "brevity.py").write_text(BREVITY + "\n# edited\n")
    assert fingerprint() != before


# --- engine helpers -----------------------------------------------------------------------------

def test_combine_is_the_weighted_mean():
    assert rewards.combine({"a": 1.0, "b": 0.0}, {"a": 3.0, "b": 1.0, "unused": 9.0}) == 0.75
    assert rewards.combine({"a": 0.4}, {"a": 2.0}) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="no weight for reward b"):
        rewards.combine({"a": 1.0, "b": 1.0}, {"a": 1.0})
    with pytest.raises(ValueError, match="at least one must be positive"):
        rewards.combine({"a": 1.0}, {"a": 0.0})


def test_group_advantages_standardise_each_group():
    got = rewards.group_advantages([1.0, 0.0, 0.5, 0.5, 2.0, 4.0], 2)
    # (1, 0): mean .5, sample std sqrt(.5); the constant group gives zeros.
    scale = 0.5 / (0.5 ** 0.5 + 1e-4)
    assert got == pytest.approx([scale, -scale, 0.0, 0.0, -1.0 / (2 ** 0.5 + 1e-4),
                                 1.0 / (2 ** 0.5 + 1e-4)])
    assert rewards.group_advantages([3.0, 3.0, 3.0], 3) == [0.0, 0.0, 0.0]
    assert rewards.group_advantages([], 4) == []
    with pytest.raises(ValueError, match="5 values do not form whole groups of 2"):
        rewards.group_advantages([1.0] * 5, 2)


def test_kto_labels_use_the_threshold_inclusively():
    assert rewards.kto_labels([0.2, 0.5, 0.9], 0.5) == [False, True, True]


# --- TRL with the training rows ---------------------------------------------------------------

def test_trl_rewards_find_their_row_by_id(user_project):
    (user_project / "rewards" / "spy.py").write_text(
        "def reward(answer, context):\n"
        "    return float(len(context['tests'] or '')) + len(context['reference'])\n")
    rows = [{"id": "a", "prompt": [{"role": "user", "content": "q"}], "answer": "xy",
             "meta": {"tests": "assert 1"}},
            {"id": "b", "prompt": [{"role": "user", "content": "q"}], "answer": "x"}]
    specs = [{"name": "spy", "type": "python", "file": "rewards/spy.py", "weight": 1.0}]
    funcs, _ = rewards.for_trl(specs, root=user_project, rows=rows)
    completions = [[{"role": "assistant", "content": "c"}]] * 2
    # TRL passes only the dataset's flat columns; the tests come from the row with that id.
    assert funcs[0](["q", "q"], completions, id=["a", "b"], answer=["?", "?"],
                    trainer_state=None) == [10.0, 1.0]
    # No id column: the context comes from the columns TRL passed.
    assert funcs[0](["q"], completions[:1], answer=["xyz"]) == [3.0]
    with pytest.raises(ValueError, match="row id 'zz', which is not among the 2 training rows"):
        funcs[0](["q"], completions[:1], id=["zz"])
    rewards.preflight(funcs, rows[0])


def test_preflight_names_a_python_reward_that_raises(user_project):
    specs = [{"name": "kaboom", "type": "python", "file": "rewards/brevity.py",
              "function": "boom", "weight": 1.0}]
    funcs, _ = rewards.for_trl(specs, root=user_project)
    with pytest.raises(ValueError, match="reward kaboom raised KeyError: 'tests'"):
        rewards.preflight(funcs, {"id": "a", "prompt": [{"role": "user", "content": "q"}]})
