"""The terminal progress bar and the loss plot, fed the files a training run writes."""
import io
import json
import time

from agents import training_progress, training_report
from agents.gate import GateContext
from factory.project import Project


def test_progress_follows_the_status_file(tmp_path):
    from rich.console import Console
    from rich.progress import Progress

    status = tmp_path / "training-status.json"
    since = time.time() - 1
    status.write_text(json.dumps({"step": 12, "total_steps": 40, "loss": 0.5, "reward": None,
                                  "stage": "2/3 dpo"}))
    with Progress(console=Console(file=io.StringIO(), force_terminal=True)) as progress:
        task = progress.add_task("training", total=None, detail="")
        training_progress._update(progress, task, status, since)
        shown = progress.tasks[0]
        assert (shown.completed, shown.total) == (12, 40)
        assert shown.description == "stage 2/3 dpo" and shown.fields["detail"] == "loss 0.5000"
        # A status file older than this run (an earlier run's) is not shown as this one.
        training_progress._update(progress, task, status, time.time() + 60)
        assert progress.tasks[0].completed == 12


def test_no_bar_without_an_interactive_terminal(tmp_path):
    ctx = GateContext(project=None, config=None, cache=None, options={"progress": False})
    with training_progress.shown(ctx, tmp_path / "missing.json"):
        pass  # nothing drawn, nothing raised


def test_training_plot_has_a_panel_per_stage(tmp_path):
    (tmp_path / "training-config.json").write_text("{}")
    project = Project(tmp_path)
    stats = {"stages": [
        {"method": "sft", "loss_curve": [[1, 2.0], [2, 1.0]], "eval_curve": [[2, 1.2]]},
        {"method": "grpo", "loss_curve": [[1, 0.0], [2, 0.01]], "reward_curve": [[1, 0.2]]}]}
    path = training_report.write(project, stats)
    assert path == tmp_path / "reports" / "training.png"
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert training_report.write(project, {"stages": [{"method": "sft", "loss_curve": []}]}) \
        is None
