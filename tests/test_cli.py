"""The CLI contract coding assistants rely on: JSON shapes, error codes, exit codes, no torch."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import factory
from factory.errors import CATALOGUE

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")


def assert_envelope(payload, command, ok):
    assert payload["ok"] is ok and payload["command"] == command and payload["version"] == 1
    assert set(payload["next"]) >= {"command", "reason"}
    if ok:
        assert "result" in payload
    else:
        assert set(payload["error"]) == {"code", "message", "hint", "details"}
        assert payload["error"]["code"] in CATALOGUE and payload["error"]["hint"]


def test_init_status_next_log_shapes(tmp_path):
    rc, out = factory("init", str(tmp_path / "p"))
    assert rc == 0
    assert_envelope(out, "init", True)
    rc, out = factory("-C", str(tmp_path / "p"), "status")
    assert rc == 0
    assert_envelope(out, "status", True)
    result = out["result"]
    assert result["state"] == "new" and result["training"] is None
    assert [g["name"] for g in result["gates"]] == ["baseline", "format", "finetune",
                                                    "evaluate", "deploy"]
    assert {g["status"] for g in result["gates"]} == {"pending"}
    assert out["next"]["command"] == "factory run baseline"
    rc, out = factory("next", "-C", str(tmp_path / "p"))
    assert rc == 0 and out["result"]["command"] == "factory run baseline"
    rc, out = factory("log", "-C", str(tmp_path / "p"))
    assert rc == 0 and out["result"]["events"] == []


@pytest.mark.parametrize("args,code,exit_code", [
    (["status"], "E_NOT_A_PROJECT", 2),
    (["run", "finetune"], "E_GATE_ORDER", 3),
    (["run", "deploy"], "E_NO_VERDICT", 3),
    (["run", "train"], "E_UNKNOWN_GATE", 2),
    (["run"], "E_USAGE", 2),
    (["run", "baseline"], "E_NO_DATA", 2),
])
def test_error_codes_and_exit_codes(tmp_path, args, code, exit_code):
    if code != "E_NOT_A_PROJECT":
        factory("init", str(tmp_path))
    rc, out = factory("-C", str(tmp_path), *args)
    assert_envelope(out, args[0], False)
    assert out["error"]["code"] == code and rc == exit_code


def test_schema_errors_name_each_row(chat_project):
    with open(chat_project / "data" / "raw" / "chat.jsonl", "a") as fh:
        fh.write('{"messages": [{"role": "user", "content": "q"}]}\n')
        fh.write('{"conversations": [{"from": "gpt"}]}\n')
    rc, out = factory("-C", str(chat_project), "run", "baseline")
    assert rc == 2 and out["error"]["code"] == "E_SCHEMA"
    problems = out["error"]["details"]["problems"]
    assert out["error"]["details"]["bad_count"] == 2
    assert {(p["file"], p["line"]) for p in problems} == {("data/raw/chat.jsonl", 301),
                                                          ("data/raw/chat.jsonl", 302)}
    on_302 = {p["field"]: p["expected"] for p in problems if p["line"] == 302}
    assert on_302 == {"messages": "this required field of a messages record"}
    found = next(p["found"] for p in problems if p["line"] == 302)
    assert "looks like sharegpt" in found and "detected from its first record" in found


def test_config_error_through_the_cli(chat_project):
    config = json.loads((chat_project / "training-config.json").read_text())
    config["training"]["epoch"] = 3
    (chat_project / "training-config.json").write_text(json.dumps(config))
    rc, out = factory("-C", str(chat_project), "status")
    assert rc == 2 and out["error"]["code"] == "E_CONFIG"
    assert out["error"]["details"]["errors"][0]["field"] == "training.epoch"


def test_init_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    rc, out = factory("init", str(tmp_path))
    assert rc == 2 and out["error"]["code"] == "E_PROJECT_EXISTS"
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("command", ["init", "status", "next", "log", "check", "profile",
                                     "promote"])
def test_non_training_commands_never_import_torch(tmp_path, command):
    project = tmp_path / "p"
    if command != "init":
        factory("init", str(project))
    args = ["init", str(project)] if command == "init" else ["-C", str(project), command]
    args += ["--list"] if command == "promote" else []
    probe = (f"import sys, json\nfrom factory.cli import main\nrc = main({args!r} + ['--json'])\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []
    # check answers too, with the items a fresh project still lacks.
    assert json.loads(proc.stdout)["ok"] is (command != "check")


def test_every_error_code_is_documented():
    documented = set(re.findall(r"`(E_[A-Z_]+)`", (ROOT / "docs" / "errors.md").read_text()))
    assert documented == set(CATALOGUE)


def test_every_code_has_a_hint_and_a_summary():
    for code, entry in CATALOGUE.items():
        assert entry.hint.strip() and entry.summary.strip(), code


def test_every_command_has_a_json_schema():
    from factory.cli import COMMANDS

    shipped = {p.name.split(".")[0] for p in (ROOT / "schemas" / "cli").glob("*.schema.json")}
    assert shipped == set(COMMANDS) | {"error"}


def test_every_raised_code_is_in_the_catalogue():
    sources = [p for d in ("factory", "agents") for p in (ROOT / d).rglob("*.py")]
    raised = {code for p in sources
              for code in re.findall(r"\"(E_[A-Z_]+)\"", p.read_text())}
    assert raised <= set(CATALOGUE), raised - set(CATALOGUE)
