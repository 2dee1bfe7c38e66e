"""The `command` reward: a user's program scores each answer, fed it as data, never via a shell.

Unit tests run tiny Python scripts (written into tmp_path, run with sys.executable); the last
test trains GRPO for two steps through the real CLI with a command reward.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import pytest

from factory import checklist, rewards
from factory.config import ProjectConfig, RewardConfig
from factory.project import Project
from factory.rewards import RewardError

# Scores the answer by length; appends one line per run to calls.txt so a test can count runs.
LENGTH = r'''
import json, sys
paths = [a for a in sys.argv[1:] if not a.startswith("-")]
text = open(paths[0], encoding="utf-8").read() if paths else sys.stdin.read()
with open("calls.txt", "a") as fh:
    fh.write("run\n")
print(json.dumps({"score": len(text) / 100, "details": {"received": text}}))
'''
JUDGE = r'''
import json, sys
doc = json.load(sys.stdin)
print("a banner a test runner might print first")
print(json.dumps({"score": float(doc["completion"] == doc["reference"]),
                  "details": {"id": doc["id"], "keys": sorted(doc), "prompt": doc["prompt"]}}))
'''


def script(root: Path, name: str, code: str) -> str:
    path = root / "rewards" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code)
    return f"rewards/{name}"


def build(root: Path, **entry):
    """The reward exactly as a gate builds it: validated by the config model first."""
    spec = RewardConfig.model_validate({"name": "cmd", "type": "command", **entry}).model_dump()
    return rewards.build([spec], root=root)["cmd"]


def runs(root: Path) -> int:
    calls = root / "calls.txt"
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def cache_entries(root: Path) -> list[Path]:
    return sorted((root / ".factory" / "cache" / "rewards").glob("*.json"))


@pytest.fixture
def length(tmp_path) -> list[str]:
    return [sys.executable, script(tmp_path, "length.py", LENGTH)]


# --- how the answer reaches the program -------------------------------------------------------

def test_stdin_mode_scores_the_answer_and_keeps_its_details(tmp_path, length):
    reward = build(tmp_path, command=length)
    assert reward("x" * 25, {}) == 0.25
    [entry] = cache_entries(tmp_path)
    cached = json.loads(entry.read_text())
    assert cached["score"] == 0.25 and cached["details"] == {"received": "x" * 25}
    assert cached["command"] == length


def test_file_mode_passes_a_temp_file_path(tmp_path, length):
    reward = build(tmp_path, command=[*length, "{file}"], input="file")
    assert reward("héllo", {}) == 0.05
    details = json.loads(cache_entries(tmp_path)[0].read_text())["details"]
    assert details == {"received": "héllo"}
    # the temp file is gone once scored
    assert not list(Path(tempfile.gettempdir()).glob("mf-reward-*/completion.txt"))


def test_file_placeholder_may_sit_inside_an_argument(tmp_path):
    code = "import sys; p = sys.argv[1].split('=', 1)[1]; print(len(open(p).read()))"
    reward = build(tmp_path, command=[sys.executable, "-c", code, "--answer={file}"],
                   input="file", cache=False)
    assert reward("four", {}) == 4.0


def test_json_mode_sends_the_context_and_reads_the_last_line(tmp_path):
    reward = build(tmp_path, command=[sys.executable, script(tmp_path, "judge.py", JUDGE)],
                   input="json")
    context = rewards.context_of({"id": "e7", "messages": [
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]})
    assert reward("4", context) == 1.0
    assert reward("5", context) == 0.0
    details = [json.loads(p.read_text())["details"] for p in cache_entries(tmp_path)]
    assert all(d["id"] == "e7" for d in details)
    assert details[0]["keys"] == ["completion", "id", "meta", "prompt", "reference", "tests",
                                  "tools"]
    assert details[0]["prompt"] == [{"role": "user", "content": "2+2?"}]


def test_a_bare_number_is_a_score(tmp_path):
    reward = build(tmp_path, command=[sys.executable, "-c", "print(-2.5)"], cache=False)
    assert reward("anything", {}) == -2.5


def test_cwd_is_a_folder_of_the_project(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "marker").write_text("3")
    reward = build(tmp_path, command=[sys.executable, "-c", "print(open('marker').read())"],
                   cwd="web", cache=False)
    assert reward("", {}) == 3.0


# --- model output is data ---------------------------------------------------------------------

EVIL = "$(touch pwned) `touch pwned2`; rm -rf victim && touch pwned3 | cat > pwned4\n'\"{file}"


@pytest.mark.parametrize("mode", ["stdin", "file", "json"])
def test_shell_metacharacters_in_an_answer_are_passed_verbatim(tmp_path, mode):
    (tmp_path / "victim").mkdir()
    echo = ("import json, sys\n"
            "mode = sys.argv[1] if len(sys.argv) > 1 else 'stdin'\n"
            "text = sys.stdin.read() if mode in ('stdin', 'json') else open(mode).read()\n"
            "if mode == 'json': text = json.loads(text)['completion']\n"
            "print(json.dumps({'score': 1, 'details': text}))\n")
    argv = [sys.executable, script(tmp_path, "echo.py", echo)]
    argv += ["{file}"] if mode == "file" else ["json"] if mode == "json" else []
    reward = build(tmp_path, command=argv, input=mode)
    assert reward(EVIL, {}) == 1.0
    assert json.loads(cache_entries(tmp_path)[0].read_text())["details"] == EVIL
    assert (tmp_path / "victim").is_dir()
    assert not [p for p in tmp_path.rglob("pwned*")] and not list(Path.cwd().glob("pwned*"))


def test_no_shell_anywhere_in_the_reward_code():
    source = Path(rewards.command.__file__).read_text()
    assert "shell=True" not in source and "os.system" not in source


# --- what goes wrong, said clearly ------------------------------------------------------------

def test_a_missing_command_is_refused_at_build_time(tmp_path):
    with pytest.raises(RewardError, match=r"reward cmd \(command\): command "
                                          r"'no-such-program-mf' is not on PATH"):
        build(tmp_path, command=["no-such-program-mf", "--json"])
    with pytest.raises(RewardError, match=r"command 'rewards/nope.sh': no such file"):
        build(tmp_path, command=["rewards/nope.sh"])
    plain = tmp_path / "rewards" / "plain.sh"
    plain.parent.mkdir()
    plain.write_text("echo 1\n")
    with pytest.raises(RewardError, match=r"is not executable; chmod \+x it"):
        build(tmp_path, command=["rewards/plain.sh"])
    plain.chmod(0o755)
    plain.write_text("#!/bin/sh\necho 1\n")
    assert build(tmp_path, command=["rewards/plain.sh"])("", {}) == 1.0
    assert build(tmp_path, command=["./rewards/plain.sh"], cache=False)("", {}) == 1.0


def test_a_missing_command_fails_the_pre_training_check(tmp_path):
    config = ProjectConfig.model_validate({
        "name": "p", "model": {"name": "m"},
        "rewards": [{"name": "story", "type": "command", "command": ["no-such-runner-mf"]}]})
    [item] = checklist.rewards(Project(root=tmp_path.resolve()), config)
    assert item.status == "fail" and "no-such-runner-mf" in item.detail
    assert "not on PATH" in item.detail


def test_a_non_zero_exit_shows_the_end_of_stderr(tmp_path):
    code = "import sys; sys.stderr.write('x' * 5000 + 'story 3 failed: no button'); sys.exit(3)"
    reward = build(tmp_path, command=[sys.executable, "-c", code])
    with pytest.raises(RewardError, match=r"exited with status 3; its stderr ends: x+story 3 "
                                          r"failed: no button$") as caught:
        reward("a", {})
    assert len(str(caught.value)) < 1000
    assert not cache_entries(tmp_path), "a failure is never cached"


def test_a_slow_command_is_killed_with_its_children(tmp_path):
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "open('child.pid', 'w').write(str(child.pid))\n"
            "time.sleep(60)\n")
    reward = build(tmp_path, command=[sys.executable, "-c", code], timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(RewardError, match=r"did not finish within timeout_s=0.5 s and was "
                                          r"killed; .*raise timeout_s"):
        reward("a", {})
    assert time.monotonic() - started < 10
    pid = int((tmp_path / "child.pid").read_text())
    assert not alive(pid), "the grandchild must die with the process group"


def alive(pid: int) -> bool:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):  # killed, waiting for init to reap it
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("printed", ["hello, not json", '{"points": 3}', "", '"0.5"', "true"])
def test_garbage_on_stdout_is_shown_with_what_was_expected(tmp_path, printed):
    reward = build(tmp_path, command=[sys.executable, "-c", f"print({printed!r})"])
    with pytest.raises(RewardError, match=r"reward cmd \(command\): `.*` printed .*; expected one "
                                          r"JSON object \{\"score\": <finite number>"):
        reward("a", {})


def test_long_garbage_is_cut_to_its_first_200_characters(tmp_path):
    reward = build(tmp_path, command=[sys.executable, "-c", "print('y' * 5000)"])
    with pytest.raises(RewardError) as caught:
        reward("a", {})
    assert "y" * 200 + "'..." in str(caught.value) and "y" * 201 not in str(caught.value)


@pytest.mark.parametrize("printed", ['{"score": NaN}', "Infinity", '{"score": -Infinity}'])
def test_a_non_finite_score_is_refused(tmp_path, printed):
    reward = build(tmp_path, command=[sys.executable, "-c", f"print({printed!r})"])
    with pytest.raises(RewardError, match="it must be a finite number"):
        reward("a", {})


def test_preflight_surfaces_a_broken_command_for_grpo(tmp_path):
    spec = RewardConfig.model_validate({"name": "cmd", "type": "command", "command": [
        sys.executable, "-c", "import sys; sys.exit('runner crashed')"]}).model_dump()
    funcs, weights = rewards.for_trl([spec], root=tmp_path)
    row = {"id": "g1", "prompt": [{"role": "user", "content": "q"}], "answer": "a"}
    with pytest.raises(ValueError, match=r"reward cmd raised RewardError: .*exited with status "
                                         r"1; its stderr ends: runner crashed"):
        rewards.preflight(funcs, row)


# --- the cache --------------------------------------------------------------------------------

def test_a_cached_answer_does_not_run_the_command_again(tmp_path, length):
    reward = build(tmp_path, command=length)
    assert reward("abc", {}) == reward("abc", {}) == 0.03
    assert runs(tmp_path) == 1
    assert build(tmp_path, command=length)("abc", {}) == 0.03, "a fresh build reads the cache too"
    assert runs(tmp_path) == 1
    reward("abcd", {})
    assert runs(tmp_path) == 2 and len(cache_entries(tmp_path)) == 2


def test_the_cache_key_follows_the_argv_input_and_program(tmp_path, length):
    build(tmp_path, command=length)("abc", {})
    build(tmp_path, command=[*length, "--strict"])("abc", {})
    assert runs(tmp_path) == 2, "another argv is another key"
    build(tmp_path, command=[*length, "{file}"], input="file")("abc", {})
    assert runs(tmp_path) == 3, "another input mode is another key"
    (tmp_path / length[1]).write_text(LENGTH + "\n# edited\n")
    build(tmp_path, command=length)("abc", {})
    assert runs(tmp_path) == 4, "an edited program file is another key"
    (tmp_path / "stories").mkdir()
    (tmp_path / "stories" / "one.txt").write_text("v1")
    build(tmp_path, command=length, depends_on=["stories"])("abc", {})
    build(tmp_path, command=length, depends_on=["stories"])("abc", {})
    assert runs(tmp_path) == 5
    (tmp_path / "stories" / "one.txt").write_text("v2")
    build(tmp_path, command=length, depends_on=["stories"])("abc", {})
    assert runs(tmp_path) == 6, "an edited depends_on file is another key"


def test_json_mode_keys_on_the_context_it_sends(tmp_path):
    counting = JUDGE.replace("doc = json.load(sys.stdin)",
                             "doc = json.load(sys.stdin); open('calls.txt', 'a').write('run\\n')")
    reward = build(tmp_path, command=[sys.executable, script(tmp_path, "judge.py", counting)],
                   input="json")
    reward("4", {"reference": "4", "id": "a"})
    reward("4", {"reference": "4", "id": "a"})
    assert runs(tmp_path) == 1
    reward("4", {"reference": "4", "id": "b"})
    assert runs(tmp_path) == 2


def test_a_corrupt_cache_entry_is_recomputed(tmp_path, length):
    reward = build(tmp_path, command=length)
    reward("abc", {})
    [entry] = cache_entries(tmp_path)
    for corrupt in ("{torn", '{"score": "high"}', "[]", '{"score": NaN}'):
        entry.write_text(corrupt)
        assert reward("abc", {}) == 0.03
        assert json.loads(entry.read_text())["score"] == 0.03, "and written again"
    assert runs(tmp_path) == 5


def test_cache_off_runs_every_time(tmp_path, length):
    reward = build(tmp_path, command=length, cache=False)
    reward("abc", {}), reward("abc", {})
    assert runs(tmp_path) == 2 and not cache_entries(tmp_path)


# --- config, paths and staleness --------------------------------------------------------------

def test_the_config_is_checked(tmp_path):
    def check(**entry):
        return RewardConfig.model_validate({"name": "c", "type": "command", **entry})
    with pytest.raises(ValueError, match="a command reward needs `command`"):
        check()
    with pytest.raises(ValueError, match="valid list"):
        check(command="python rewards/story.py")  # a shell string is not an argv
    with pytest.raises(ValueError, match=r"input \"file\" needs `\{file\}`"):
        check(command=["python", "x.py"], input="file")
    with pytest.raises(ValueError, match=r"`\{file\}` is replaced only with input \"file\""):
        check(command=["python", "x.py", "{file}"])
    with pytest.raises(ValueError, match="cwd must be a path relative to the project"):
        check(command=["python"], cwd="../elsewhere")
    with pytest.raises(ValueError, match="depends_on must be a path relative"):
        check(command=["python"], depends_on=["/etc"])
    with pytest.raises(ValueError, match="command.0. must not leave the project"):
        check(command=["../bin/run"])
    with pytest.raises(ValueError, match="timeout_s"):
        check(command=["python"], timeout_s=0)
    entry = check(command=["python", "x.py"])
    assert (entry.input, entry.cache, entry.cwd, entry.timeout_s) == ("stdin", True, None, 5.0)


def test_paths_may_not_escape_the_project(tmp_path_factory):
    root, elsewhere = tmp_path_factory.mktemp("proj"), tmp_path_factory.mktemp("elsewhere")
    (root / "out").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "run.sh").write_text("#!/bin/sh\necho 1\n")
    (elsewhere / "run.sh").chmod(0o755)
    with pytest.raises(RewardError, match="cwd 'out' resolves to .*, outside the project"):
        build(root, command=[sys.executable, "-c", "print(1)"], cwd="out")
    with pytest.raises(RewardError, match=r"command\[0\] 'out/run.sh' resolves to .*outside"):
        build(root, command=["out/run.sh"])
    with pytest.raises(RewardError, match="depends_on 'out' resolves to .*outside"):
        build(root, command=[sys.executable, "-c", "print(1)"], depends_on=["out"])
    with pytest.raises(RewardError, match="depends_on: no file or folder tests"):
        build(root, command=[sys.executable, "-c", "print(1)"], depends_on=["tests"])
    with pytest.raises(RewardError, match="no project root was given"):
        rewards.build([{"name": "c", "type": "command", "command": ["true"]}])


def test_the_program_and_its_files_are_reward_files(tmp_path, length):
    (tmp_path / "stories").mkdir()
    spec = RewardConfig.model_validate({"name": "c", "type": "command", "command": [
        *length, "--verbose", "stories", "missing.txt", "{file}"], "input": "file",
        "depends_on": ["stories", "rewards/length.py"]}).model_dump()
    # The script (a project file named in argv) and depends_on; not options, not the
    # placeholder, not a folder only argv names (it could be a whole node_modules).
    assert rewards.files_of([spec], tmp_path) == ["rewards/length.py", "stories"]
    assert rewards.files_of([spec]) == ["stories", "rewards/length.py"], "without a root"
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho 1\n")
    (tmp_path / "run.sh").chmod(0o755)
    spec = {**spec, "command": ["./run.sh"], "input": "stdin", "depends_on": []}
    assert rewards.files_of([spec], tmp_path) == ["run.sh"]


# --- end to end -------------------------------------------------------------------------------

E2E_REWARD = r'''
import json, sys
doc = json.load(sys.stdin)
with open("calls.jsonl", "a") as fh:
    fh.write(json.dumps({"id": doc["id"]}) + "\n")
# Partial credit for an answer that looks like a call, full for the reference.
score = 1.0 if doc["completion"].strip() == doc["reference"].strip() else \
    0.5 if "call" in doc["completion"] else 0.125
print(json.dumps({"score": score, "details": {"chars": len(doc["completion"])}}))
'''


@pytest.mark.e2e
def test_grpo_and_baseline_score_with_a_command_reward(demo_project):
    from conftest import factory
    from factory.demo import write_data
    from test_methods_e2e import configure, method_records

    (demo_project / "data" / "raw" / "demo.jsonl").unlink()
    write_data(demo_project, method_records("grpo"), "grpo.jsonl")
    configure(demo_project, "grpo")
    path = demo_project / "training-config.json"
    config = json.loads(path.read_text())
    script(demo_project, "story.py", E2E_REWARD)
    config["rewards"] = [{"name": "story", "type": "command", "input": "json",
                          "command": [sys.executable, "rewards/story.py"], "timeout_s": 30}]
    config["training"].update(max_steps=2, save_steps=2)
    config["eval"]["metrics"] = ["loss", "exact_match", "reward:story"]
    path.write_text(json.dumps(config, indent=2))

    for gate in ("baseline", "format", "finetune"):
        rc, out = factory("-C", str(demo_project), "run", gate)
        assert rc == 0, (gate, out)

    baseline = json.loads((demo_project / "metrics" / "baseline.json").read_text())
    assert 0.125 <= baseline["reward:story"] <= 1.0
    examples = [json.loads(line) for line in
                (demo_project / "metrics" / "baseline-examples.jsonl").read_text().splitlines()]
    assert all(e["reward:story"] in (0.125, 0.5, 1.0) for e in examples)
    stats = json.loads((demo_project / "metrics" / "training-stats.json").read_text())
    assert set(stats["reward_means"]) == {"story"}
    assert 0.125 <= stats["reward_means"]["story"] <= 1.0
    assert "rewards: story x1.0" in (demo_project / ".factory/logs/finetune.log").read_text()
    ids = [json.loads(line)["id"] for line in
           (demo_project / "calls.jsonl").read_text().splitlines()]
    assert ids and all(ids), "every run was told its example's id"
    assert list((demo_project / ".factory" / "cache" / "rewards").glob("*.json"))

    # The program is an input of the scores: editing it makes the baseline stale.
    (demo_project / "rewards" / "story.py").write_text(E2E_REWARD + "\n# stricter now\n")
    rc, out = factory("-C", str(demo_project), "status")
    gates = {g["name"]: g for g in out["result"]["gates"]}
    assert rc == 0 and gates["baseline"]["status"] == "stale", gates["baseline"]
