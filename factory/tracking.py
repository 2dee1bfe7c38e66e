"""Every gate run logged to MLflow (or the training curves to TensorBoard), under the project.

Off by default (`tracking.backend: none`). With `mlflow`, each gate that runs becomes one MLflow
run in the experiment named for the project: params are the gate's input hashes and the config
sections it reads, metrics the numbers of its summary (and, for finetune, the trainer's own
per-step metrics: the script is given the run's id, and `report_to` sends them to it), tags the
outcome and the error code, artifacts what the gate wrote (metrics, reports, the script and its
run config). Runs land in a file store inside the project, `.factory/mlruns`, so `mlflow ui
--backend-store-uri .factory/mlruns` shows them; a remote tracking server is used only when
`tracking.allow_remote` says so, since it sends the project's metrics off the machine.

mlflow is imported only here and only when tracking is on: status, next and init never see it.
"""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from factory.config import ProjectConfig
from factory.errors import FactoryError
from factory.project import Project

MLRUNS = ".factory/mlruns"
TENSORBOARD = ".factory/tensorboard"
# The config sections each gate reads, logged as its params.
SECTIONS = {"baseline": ("model", "eval", "data"), "format": ("model", "data"),
            "finetune": ("model", "lora", "training", "distributed"),
            "evaluate": ("model", "eval"), "deploy": ("deploy",)}
ARTIFACTS = {"baseline": ("metrics/baseline.json", "data/splits/eval.jsonl"),
             "format": ("metrics/data-report.json", "reports/data.md"),
             "finetune": ("metrics/training-stats.json", "reports/training.png"),
             "evaluate": ("metrics/verdict.json", "reports/eval.md", "reports/eval-deltas.png"),
             "deploy": ()}


def store_uri(project: Project, config: ProjectConfig) -> str:
    """The MLflow tracking URI: the project's file store unless the config names another."""
    uri = config.tracking.uri
    if uri is None:
        return (project.root / MLRUNS).as_uri()
    return uri if "://" in uri else project.inside(uri).as_uri()


class GateRun:
    """One MLflow run: what the gate's script needs to report into it, and its closing."""

    def __init__(self, client: Any, run_id: str, env: dict[str, str]):
        self.client, self.run_id, self.env = client, run_id, env

    def finish(self, project: Project, gate: str, status: str, summary: dict,
               error: FactoryError | None, inputs: dict[str, str | None]) -> None:
        """The outcome: the input hashes the gate ran on (known only now: a gate can write
        what is its own input, as baseline writes the eval split), figures, artifacts."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, 0) for key, value in numbers(summary).items()]
        params = [Param(f"input.{k}", v or "none") for k, v in inputs.items()]
        tags = [RunTag("outcome", status)] + ([RunTag("error_code", error.code)] if error else [])
        self.client.log_batch(self.run_id, metrics=metrics, params=params, tags=tags)
        for rel in (*ARTIFACTS[gate], f"scripts/{gate}.py", f"scripts/{gate}.json"):
            if (project.root / rel).is_file():
                self.client.log_artifact(self.run_id, str(project.root / rel),
                                         artifact_path=str(Path(rel).parent))
        self.client.set_terminated(self.run_id, "FINISHED" if status == "passed" else "FAILED")


@contextmanager
def gate_run(project: Project, config: ProjectConfig, gate: str) -> Iterator[GateRun | None]:
    """A started run for this gate (None when tracking is off or not MLflow)."""
    if config.tracking.backend != "mlflow":
        yield None
        return
    client, experiment = _client(project, config)
    from mlflow.entities import Param, RunTag

    run = client.create_run(experiment, run_name=gate,
                            tags={"gate": gate, "project": config.name})
    params: dict[str, Any] = {}
    for section in SECTIONS[gate]:
        params.update(flatten(getattr(config, section).model_dump(), section))
    client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000])
                                               for k, v in params.items()],
                     tags=[RunTag("mlflow.source.name", f"scripts/{gate}.py")])
    env = {"MLFLOW_TRACKING_URI": store_uri(project, config), "MLFLOW_RUN_ID": run.info.run_id,
           "MLFLOW_ALLOW_FILE_STORE": "true"}
    yield GateRun(client, run.info.run_id, env)


def report_to(config: ProjectConfig) -> str:
    """The trainers' `report_to`: where the per-step metrics go."""
    return {"none": "none", "mlflow": "mlflow", "tensorboard": "tensorboard"}[
        config.tracking.backend]


def _client(project: Project, config: ProjectConfig):
    # MLflow 3 keeps its file store only on request; it is the store that needs no server.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise FactoryError("E_DEPENDENCY", "tracking.backend is mlflow, and mlflow does not "
                                           "import", hint="pip install 'mlflow-skinny>=3' (or "
                                           "set tracking.backend to none)") from None
    uri = store_uri(project, config)
    client = MlflowClient(tracking_uri=uri)
    name = config.tracking.experiment or config.name
    found = client.get_experiment_by_name(name)
    experiment = found.experiment_id if found else client.create_experiment(name)
    return client, experiment


def flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}"))
        return out
    return {prefix: value}


def numbers(summary: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a gate's summary, by dotted key; lists and text are not metrics."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(numbers(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value):
            out[name] = float(value)
    return out
