"""Run tracking: every gate run in a local MLflow file store; training curves to TensorBoard."""
from __future__ import annotations

import json
import os

import pytest

from conftest import factory
from factory.config import ProjectConfig


def configure(project, **tracking) -> None:
    path = project / "training-config.json"
    config = json.loads(path.read_text())
    config["tracking"] = tracking
    config["training"].update(max_steps=4, logging_steps=1, save_steps=2)
    path.write_text(json.dumps(config, indent=2))


def runs_of(project) -> dict[str, object]:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(project / ".factory" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("demo")
    return {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}


def test_every_gate_run_lands_in_the_projects_mlflow_store(demo_project):
    configure(demo_project, backend="mlflow")
    for gate in ("baseline", "format", "finetune"):
        rc, out = factory("-C", str(demo_project), "run", gate)
        assert rc == 0, out
    runs = runs_of(demo_project)
    assert set(runs) == {"baseline", "format", "finetune"}
    assert all(run.info.status == "FINISHED" for run in runs.values())

    baseline = runs["baseline"].data
    assert baseline.tags["outcome"] == "passed"
    assert len(baseline.params["input.eval_split"]) == 64  # the frozen split's sha256
    assert baseline.params["eval.primary_metric"] == "exact_match"
    assert baseline.metrics["exact_match"] == 0.0 and baseline.metrics["examples"] > 0
    assert runs["format"].data.params["input.raw_data"] and runs["format"].data.metrics["train"]

    finetune = runs["finetune"]
    # The gate's own figures and the trainer's per-step metrics, in one run.
    assert finetune.data.metrics["total_steps"] == 4
    assert "loss" in finetune.data.metrics and "learning_rate" in finetune.data.params
    assert finetune.data.params["training.max_steps"] == "4"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(demo_project / ".factory" / "mlruns").as_uri())
    history = client.get_metric_history(finetune.info.run_id, "loss")
    assert len(history) == 4
    artifacts = {a.path for a in client.list_artifacts(finetune.info.run_id, "metrics")}
    assert "metrics/training-stats.json" in artifacts

    # A gate that is up to date makes no run; one that fails is recorded as failed.
    rc, out = factory("-C", str(demo_project), "run", "finetune")
    assert rc == 0 and set(runs_of(demo_project)) == {"baseline", "format", "finetune"}
    rc, out = factory("-C", str(demo_project), "run", "evaluate")
    evaluate = runs_of(demo_project)["evaluate"]
    expected = "passed" if rc == 0 else "failed"
    assert evaluate.data.tags["outcome"] == expected
    if rc:
        assert evaluate.data.tags["error_code"] == out["error"]["code"]
        assert evaluate.info.status == "FAILED"


def test_tensorboard_gets_the_training_curves(demo_project):
    configure(demo_project, backend="tensorboard")
    for gate in ("baseline", "format", "finetune"):
        rc, out = factory("-C", str(demo_project), "run", gate)
        assert rc == 0, out
    events = list((demo_project / ".factory" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]


@pytest.mark.parametrize("tracking,message", [
    ({"backend": "mlflow", "uri": "https://mlflow.example.com"}, "allow_remote"),
    ({"backend": "mlflow", "uri": "/var/mlruns"}, "inside the project"),
    ({"backend": "wandb"}, "tracking.backend"),
])
def test_remote_or_outside_stores_need_consent(tracking, message):
    with pytest.raises(ValueError, match=message):
        ProjectConfig.model_validate({"name": "p", "model": {"name": "m"},
                                      "tracking": tracking})
    if "uri" in tracking and tracking["uri"].startswith("https"):
        ProjectConfig.model_validate({"name": "p", "model": {"name": "m"},
                                      "tracking": {**tracking, "allow_remote": True}})
