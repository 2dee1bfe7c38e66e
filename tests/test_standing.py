"""status/next: the remembered answer is reused only while nothing it was computed from changed,
and `next` names the one command to run (or why none can) in every state."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from agents import baseline
from factory import atomic, pipeline, standing, status_cache, witness
from factory.lock import ProjectLock
from factory.project import Project
from factory.state import DONE, FAILED, GATES, ProjectState, progress
from conftest import factory, make_chat_project


@pytest.fixture(scope="module")
def formatted_template(tmp_path_factory, demo_template):
    """A project whose baseline (stand-in, as in test_pipeline) and format gates passed."""
    root = make_chat_project(tmp_path_factory.mktemp("standing") / "proj", demo_template)
    ctx = pipeline.open_context(root)
    baseline.freeze_eval_split(ctx)
    ProjectState.load(ctx.project).record_pass(
        "baseline", inputs=baseline.inputs(ctx), outputs=baseline.outputs(ctx), summary={})
    pipeline.run(ctx, ["format"])
    return root


@pytest.fixture
def formatted(formatted_template, tmp_path):
    return Project.open(shutil.copytree(formatted_template, tmp_path / "proj"))


def views(project) -> dict:
    result, _ = standing.project_status(project.root)
    return {g["name"]: g for g in result["gates"]}


def test_the_answer_is_reused_until_something_changes(formatted, monkeypatch):
    assert views(formatted)["format"]["status"] == "passed"
    assert status_cache.lookup(formatted) is not None

    def no_recompute(project):
        raise AssertionError("recomputed although nothing changed")

    monkeypatch.setattr(standing, "_computed", no_recompute)
    assert views(formatted)["format"]["status"] == "passed"


@pytest.mark.parametrize("change", ["append", "new_file", "config", "state", "delete_split"])
def test_any_change_is_seen(formatted, change):
    views(formatted)
    raw = formatted.root / "data" / "raw"
    row = {"messages": [{"role": "user", "content": "new"}, {"role": "assistant", "content": "x"}]}
    if change == "append":
        with open(raw / "chat.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
    elif change == "new_file":
        (raw / "more.jsonl").write_text(json.dumps(row) + "\n")
    elif change == "config":
        config = json.loads(formatted.config_file.read_text())
        config["data"]["split"]["val"] = 0.2
        formatted.config_file.write_text(json.dumps(config))
    elif change == "state":
        ProjectState.load(formatted).rewind(1, gate="format", reason="test", inputs={})
    else:
        formatted.split_file("train").unlink()
    assert status_cache.lookup(formatted) is None
    shown = views(formatted)["format"]
    assert shown["status"] == "stale", shown
    assert status_cache.lookup(formatted) is not None  # and the new answer is remembered


def test_edited_code_invalidates_every_answer(formatted, monkeypatch):
    views(formatted)
    stored = json.loads(status_cache.path(formatted).read_text())
    some_file = next(iter(stored["code"]))
    stored["code"][some_file] = [0, 0, 0, 0]  # as if that source file had been edited since
    atomic.write_json(status_cache.path(formatted), stored)
    assert status_cache.lookup(formatted) is None


def test_witness_counts_reads_and_missing_paths_not_writes(tmp_path):
    read_me, missing = tmp_path / "in.txt", tmp_path / "later.txt"
    read_me.write_text("a")
    with witness.recording(tmp_path) as seen:
        read_me.read_text()
        witness.saw(missing)
        atomic.write_text(tmp_path / "out.txt", "written")
        open(os.devnull).close()  # outside the root: not ours to watch
    assert set(seen) == {str(read_me), str(missing)}
    assert seen[str(missing)] is None
    assert witness.unchanged(seen)
    missing.write_text("now here")
    assert not witness.unchanged(seen)


def test_a_warm_status_imports_no_pydantic(formatted):
    factory("-C", str(formatted.root), "status")
    probe = ("import sys, json\nfrom factory.cli import main\n"
             f"rc = main(['-C', {str(formatted.root)!r}, 'status', '--json'])\n"
             "print(json.dumps(sorted(m for m in ('pydantic', 'agents', 'transitions') "
             "if m in sys.modules)), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []
    assert json.loads(proc.stdout)["result"]["gates"][1]["status"] == "passed"


def _view(name, status, code=None):
    view = {"name": name, "status": status, "changed": ["raw_data"] if status == "stale" else []}
    if code:
        view["error"] = {"code": code, "hint": f"hint for {code}"}
    return view


def _views_in(state: str, stale: str | None = None, code: str | None = None) -> list[dict]:
    passed = progress(state)
    failed = next((g for g in GATES if FAILED[g] == state), None)
    out = []
    for index, gate in enumerate(GATES):
        status = "passed" if index < passed else "failed" if gate == failed else "pending"
        out.append(_view(gate, "stale" if gate == stale else status, code if gate == failed
                         else None))
    return out


@pytest.mark.parametrize("state", ["new", *DONE.values()])
def test_next_runs_the_first_gate_not_done(state):
    step = standing.next_action(_views_in(state), state)
    pending = [v["name"] for v in _views_in(state) if v["status"] == "pending"]
    if pending:
        assert step["command"] == f"factory run {pending[0]}" and step["gate"] == pending[0]
    else:
        assert step["command"] is None and "every gate has passed" in step["reason"]


@pytest.mark.parametrize("gate", GATES)
def test_next_after_a_failure(gate):
    step = standing.next_action(_views_in(FAILED[gate], code="E_SCRIPT_FAILED"), FAILED[gate])
    assert step["command"] == f"factory run {gate}" and "E_SCRIPT_FAILED" in step["reason"]
    said_no = standing.next_action(_views_in(FAILED[gate], code="E_NOT_BETTER"), FAILED[gate])
    assert said_no["command"] is None and "hint for E_NOT_BETTER" in said_no["reason"]


@pytest.mark.parametrize("gate", GATES)
def test_next_reruns_the_first_stale_gate(gate):
    step = standing.next_action(_views_in(DONE["deploy"], stale=gate), DONE["deploy"])
    assert step["command"] == f"factory run {gate}" and "stale (raw_data" in step["reason"]


def test_next_waits_while_another_run_holds_the_project(formatted):
    with ProjectLock(formatted):
        rc, out = factory("-C", str(formatted.root), "next")
    assert rc == 0 and out["result"]["command"] is None
    assert f"pid {os.getpid()}" in out["result"]["reason"]
    rc, out = factory("-C", str(formatted.root), "next")
    assert out["result"]["command"] == "factory run finetune"
