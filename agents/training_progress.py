"""A live progress bar for a training run in the terminal, drawn from the training-status file.

The training script runs in its own process with its output piped into the log, so the bar is drawn
by the factory process from .factory/training-status.json, which the script keeps current at every
logging step. Only an interactive terminal gets one: never with --json, --quiet or a pipe.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from agents.gate import GateContext

POLL_SECONDS = 0.5


@contextmanager
def shown(ctx: GateContext, status_file: Path):
    if not ctx.options.get("progress"):
        yield
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn)

    since, stop = time.time(), threading.Event()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeRemainingColumn())
    # Lines the gate prints meanwhile (stderr) are redirected above the bar by rich.
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("training", total=None, detail="")
        follower = threading.Thread(target=_follow, daemon=True,
                                    args=(progress, task, status_file, since, stop))
        follower.start()
        try:
            yield
        finally:
            stop.set()
            follower.join(timeout=2 * POLL_SECONDS)
            _update(progress, task, status_file, since)


def _follow(progress, task, status_file: Path, since: float, stop: threading.Event) -> None:
    while not stop.wait(POLL_SECONDS):
        _update(progress, task, status_file, since)


def _update(progress, task, status_file: Path, since: float) -> None:
    try:
        if status_file.stat().st_mtime < since:
            return  # the file of an earlier run
        status = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return
    detail = []
    if status.get("loss") is not None:
        detail.append(f"loss {status['loss']:.4f}")
    if status.get("reward") is not None:
        detail.append(f"reward {status['reward']:.3f}")
    progress.update(task, completed=status.get("step") or 0,
                    total=status.get("total_steps") or None,
                    description=f"stage {status['stage']}" if status.get("stage") else "training",
                    detail=", ".join(detail))
