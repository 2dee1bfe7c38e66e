import json
import os

import pytest

from factory.errors import FactoryError
from factory.project import Project
from factory.state import GATES, ProjectState, read_events


@pytest.fixture
def project(tmp_path):
    (tmp_path / "training-config.json").write_text('{"name": "t", "model": {"name": "x"}}')
    return Project.open(tmp_path)


def pass_gate(st, gate, **inputs):
    st.record_pass(gate, inputs=inputs or {"x": "1"}, outputs={}, summary={})


def test_gates_pass_only_in_order(project):
    st = ProjectState.load(project)
    with pytest.raises(FactoryError) as err:
        pass_gate(st, "finetune")
    assert err.value.code == "E_GATE_ORDER"
    assert err.value.details["needed"] == "baseline"
    assert st.state == "new"
    for gate in GATES:
        pass_gate(st, gate)
    assert st.state == "deployed"


def test_every_transition_is_persisted_and_logged(project):
    st = ProjectState.load(project)
    pass_gate(st, "baseline", eval_split="abc")
    pass_gate(st, "format")
    saved = json.loads(project.state_file.read_text())
    assert saved["state"] == "formatted"
    assert saved["gates"]["baseline"]["inputs"] == {"eval_split": "abc"}
    events = read_events(project)
    assert [(e["from"], e["to"], e["gate"]) for e in events] == [
        ("new", "baselined", "baseline"), ("baselined", "formatted", "format")]
    assert events[0]["inputs"] == {"eval_split": "abc"} and events[0]["outcome"] == "passed"
    assert ProjectState.load(project).state == "formatted"


def test_failure_state_and_rerun(project):
    st = ProjectState.load(project)
    pass_gate(st, "baseline")
    st.record_failure("format", FactoryError("E_SCHEMA", "bad row"), inputs={})
    assert st.state == "format_failed"
    assert st.record["last_error"]["code"] == "E_SCHEMA"
    with pytest.raises(FactoryError) as err:
        pass_gate(st, "finetune")
    assert err.value.code == "E_GATE_ORDER"
    pass_gate(st, "format")
    assert st.state == "formatted" and st.record["last_error"] is None


def test_rerunning_an_earlier_gate_moves_the_project_back(project):
    st = ProjectState.load(project)
    for gate in GATES[:4]:
        pass_gate(st, gate)
    pass_gate(st, "format")
    assert st.state == "formatted"


def test_rewind_marks_later_gates_stale(project):
    st = ProjectState.load(project)
    for gate in GATES[:3]:
        pass_gate(st, gate)
    st.rewind(1, gate="format", reason="changed: raw_data", inputs={})
    assert st.state == "baselined"
    assert st.gate("format")["status"] == "stale" and st.gate("finetune")["status"] == "stale"
    assert read_events(project)[-1]["reason"] == "changed: raw_data"


def test_a_crash_during_the_write_leaves_the_old_state(project, monkeypatch):
    st = ProjectState.load(project)
    pass_gate(st, "baseline")
    before = project.state_file.read_text()

    def crash(*args):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        pass_gate(st, "format")
    assert project.state_file.read_text() == before
    assert not [p for p in project.factory_dir.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_state_is_a_clear_error(project):
    project.factory_dir.mkdir()
    project.state_file.write_text('{"state": "flying"')
    with pytest.raises(FactoryError) as err:
        ProjectState.load(project)
    assert err.value.code == "E_STATE_CORRUPT"


def test_a_torn_last_event_line_is_skipped(project):
    st = ProjectState.load(project)
    pass_gate(st, "baseline")
    with open(project.events_file, "a") as fh:
        fh.write('{"at": "2026-')
    assert len(read_events(project)) == 1
