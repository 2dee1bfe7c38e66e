"""Live training status in .factory/training-status.json, written atomically at every log step,
and its history in .factory/training-log.jsonl, one line appended per log step.

Dashboards and `factory status` poll the status file, so it is always complete JSON; the log is what
`factory ui` draws the loss curve from. A NaN or exploding loss stops training here, with the code
E_NAN_LOSS, instead of burning hours on a dead run.
"""
from __future__ import annotations

import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from transformers import TrainerCallback

from factory import atomic

DIVERGENCE_FACTOR = 10.0  # loss this many times above its first logged value means divergence
LOG_NAME = "training-log.jsonl"  # beside the status file: Project.training_log_file


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class TrainingStatus(TrainerCallback):
    def __init__(self, path: Path, total_epochs: float, watch_divergence: bool = True,
                 stage: str | None = None):
        self.path = path
        self.log_path = Path(path).with_name(LOG_NAME)
        # Under a launcher every process has this callback; the first alone writes the files.
        self.writer = int(os.environ.get("RANK", "0")) == 0
        self.watch_divergence = watch_divergence
        self.status = {"running": False, "step": 0, "total_steps": 0, "epoch": 0.0,
                       "total_epochs": total_epochs, "loss": None, "learning_rate": None,
                       "eta_seconds": None, "started_at": None, "checkpoint_at": None,
                       "reward": None, "stage": stage, "updated_at": None, "error": None}
        self.diverged: str | None = None
        self._first_loss: float | None = None
        self._t0 = time.monotonic()
        self._step0 = 0

    def write(self, **changes) -> None:
        self.status.update(changes, updated_at=_now())
        if self.writer:
            atomic.write_json(self.path, self.status)

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0, self._step0 = time.monotonic(), state.global_step
        self._restart_log(state.global_step)
        self.write(running=True, step=state.global_step, total_steps=state.max_steps,
                   started_at=_now(), error=None, pid=os.getpid())

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        loss = logs.get("loss")
        done = state.global_step - self._step0
        remaining = state.max_steps - state.global_step
        eta = (time.monotonic() - self._t0) / done * remaining if done > 0 else None
        self.write(step=state.global_step, epoch=round(state.epoch or 0.0, 4),
                   loss=loss if loss is not None else self.status["loss"],
                   learning_rate=logs.get("learning_rate", self.status["learning_rate"]),
                   reward=logs.get("reward", self.status["reward"]),
                   eta_seconds=round(eta, 1) if eta is not None else None)
        if loss is not None or "reward" in logs:  # a training step, not an eval or the summary
            self._log_step(state, logs)
        if loss is not None:  # every process: the logged loss is their mean, so all stop alike
            self._check_loss(float(loss), control)

    def on_save(self, args, state, control, **kwargs):
        self.write(checkpoint_at=_now(), step=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.write(running=False, step=state.global_step, error=self.diverged)

    def _restart_log(self, step: int) -> None:
        """A fresh run starts the history empty; a resumed one keeps what led to its checkpoint.

        In a chain (stage "2/3 dpo") the earlier stages' lines stay: a finished stage is not
        trained again, and its curve is part of this run's.
        """
        if not self.writer:
            return
        number = _stage_number(self.status["stage"])
        kept = [row for row in atomic.read_appended(self.log_path)
                if _stage_number(row.get("stage")) < number
                or (_stage_number(row.get("stage")) == number and row.get("step", 0) <= step)]
        atomic.write_jsonl(self.log_path, kept)

    def _log_step(self, state, logs: dict) -> None:
        if not self.writer:
            return
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
               "loss": logs.get("loss"), "learning_rate": logs.get("learning_rate"),
               "reward": logs.get("reward"), "stage": self.status["stage"], "at": _now()}
        atomic.append_line(self.log_path, json.dumps(row, sort_keys=True))

    def _check_loss(self, loss: float, control) -> None:
        if self._first_loss is None and math.isfinite(loss):
            self._first_loss = loss
        if not math.isfinite(loss):
            self.diverged = f"loss became {loss}"
        elif (self.watch_divergence and self._first_loss
              and loss > DIVERGENCE_FACTOR * self._first_loss):
            self.diverged = f"loss diverged to {loss:.3g} from {self._first_loss:.3g}"
        if self.diverged:
            control.should_training_stop = True


def _stage_number(stage: str | None) -> int:
    """1 for "1/3 sft" (or no stage: a single-stage run), 2 for "2/3 dpo"."""
    head = (stage or "").split("/", 1)[0]
    return int(head) if head.isdigit() else 1
