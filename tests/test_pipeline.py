"""The pipeline's staleness and skip rules, driven through the real format gate (no model needed)."""
import json

import pytest

from agents import baseline
from factory import pipeline
from factory.errors import FactoryError
from factory.state import ProjectState


@pytest.fixture
def ctx(chat_project):
    ctx = pipeline.open_context(chat_project)
    # Stand-in for a passed baseline: freeze the eval split exactly as the gate does, and record
    # the gate as passed with its real inputs. Scoring a model is the e2e tests' business.
    baseline.freeze_eval_split(ctx)
    ProjectState.load(ctx.project).record_pass(
        "baseline", inputs=baseline.inputs(ctx), outputs=baseline.outputs(ctx), summary={})
    return ctx


def gate_view(ctx, name):
    views = pipeline.inspect(ctx, ProjectState.load(ctx.project))
    return next(v for v in views if v.name == name)


def test_format_writes_splits_that_never_touch_eval(ctx):
    [result] = pipeline.run(ctx, ["format"])
    assert result["outcome"] == "passed"
    splits = {n: [json.loads(l)["id"] for l in ctx.project.split_file(n).read_text().splitlines()]
              for n in ("train", "val", "eval")}
    assert not set(splits["eval"]) & (set(splits["train"]) | set(splits["val"]))
    assert sum(len(v) for v in splits.values()) == 300
    assert (ctx.project.scripts_dir / "format.py").exists()
    assert json.loads((ctx.project.scripts_dir / "format.json").read_text())["on_error"] == "fail"


def test_unchanged_gate_is_skipped_and_changed_data_makes_it_stale(ctx):
    pipeline.run(ctx, ["format"])
    [again] = pipeline.run(ctx, ["format"])
    assert again["outcome"] == "skipped"

    raw = ctx.project.root / "data" / "raw" / "chat.jsonl"
    with open(raw, "a") as fh:
        fh.write(json.dumps({"messages": [{"role": "user", "content": "new"},
                                          {"role": "assistant", "content": "data"}]}) + "\n")
    view = gate_view(ctx, "format")
    assert view.status == "stale" and view.changed == ["raw_data"]

    st = ProjectState.load(ctx.project)
    pipeline.reconcile(ctx, st)
    assert st.state == "baselined"
    [rerun] = pipeline.run(ctx, ["format"])
    assert rerun["outcome"] == "passed"
    assert gate_view(ctx, "format").status == "passed"


def test_tampered_output_makes_the_gate_stale(ctx):
    pipeline.run(ctx, ["format"])
    ctx.project.split_file("train").write_text("")
    assert gate_view(ctx, "format").changed == ["out:train"]


def test_bad_record_fails_the_gate_and_writes_no_split(ctx):
    raw = ctx.project.root / "data" / "raw" / "chat.jsonl"
    with open(raw, "a") as fh:
        fh.write('{"messages": [{"role": "robot", "content": "x"}]}\n')
    with pytest.raises(FactoryError) as err:
        pipeline.run(ctx, ["format"])
    assert err.value.code == "E_SCHEMA"
    assert err.value.details["problems"][0]["line"] == 301
    assert not ctx.project.split_file("train").exists()
    assert ProjectState.load(ctx.project).state == "format_failed"


def test_skip_mode_quarantines_bad_records(ctx):
    config = json.loads(ctx.project.config_file.read_text())
    config["data"]["on_error"] = "skip"
    ctx.project.config_file.write_text(json.dumps(config))
    raw = ctx.project.root / "data" / "raw" / "chat.jsonl"
    with open(raw, "a") as fh:
        fh.write('{"messages": [{"role": "robot", "content": "x"}]}\n')
    ctx = pipeline.open_context(ctx.project.root)
    pipeline.run(ctx, ["format"])
    rejected = [json.loads(l) for l in ctx.project.rejected_file.read_text().splitlines()]
    assert len(rejected) == 1 and rejected[0]["problems"][0]["file"] == "data/raw/chat.jsonl"


def test_changed_eval_split_is_refused(ctx):
    ctx.project.split_file("eval").write_text("")
    with pytest.raises(FactoryError) as err:
        pipeline.run(ctx, ["format"])
    assert err.value.code == "E_EVAL_CHANGED"


def test_next_action_follows_the_state(ctx):
    st = ProjectState.load(ctx.project)
    step = pipeline.next_action(pipeline.inspect(ctx, st), st.state)
    assert step["command"] == "factory run format"
    pipeline.run(ctx, ["format"])
    st = ProjectState.load(ctx.project)
    assert pipeline.next_action(pipeline.inspect(ctx, st), st.state)["gate"] == "finetune"
