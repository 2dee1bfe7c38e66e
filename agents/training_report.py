"""reports/training.png: the loss of every stage of a training run, and GRPO's reward, by step.

Drawn from metrics/training-stats.json after the run, so a person sees at a glance whether the
loss fell, whether validation loss followed it, and where a chain's stages begin.
"""
from __future__ import annotations

import io
from pathlib import Path

from factory import atomic
from factory.project import Project

PLOT = "reports/training.png"


def write(project: Project, stats: dict) -> Path | None:
    """Write the plot; None when no stage logged a loss (nothing to draw)."""
    stages = stats.get("stages") or [stats]
    if not any(s.get("loss_curve") for s in stages):
        return None
    path = project.root / PLOT
    atomic.write_bytes(path, plot(stages))
    return path


def plot(stages: list[dict]) -> bytes:
    """One panel per stage (loss and validation loss), plus its reward where it has one."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 2.4 * len(stages) + 0.4))
    axes = fig.subplots(len(stages), 1, squeeze=False)[:, 0]
    for number, (ax, stage) in enumerate(zip(axes, stages), 1):
        _series(ax, stage.get("loss_curve"), "train loss", "tab:blue")
        _series(ax, stage.get("eval_curve"), "validation loss", "tab:orange", marker="o")
        ax.set_ylabel("loss")
        ax.set_title(f"stage {number}: {stage['method']}", fontsize=9)
        if stage.get("reward_curve"):
            reward_ax = ax.twinx()
            _series(reward_ax, stage["reward_curve"], "reward", "tab:green")
            reward_ax.set_ylabel("reward")
            reward_ax.legend(loc="upper right", fontsize=7)
        ax.legend(loc="upper left", fontsize=7)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _series(ax, points, label: str, colour: str, marker: str | None = None) -> None:
    if points:
        steps, values = zip(*points)
        ax.plot(steps, values, label=label, color=colour, marker=marker, linewidth=1.2)
