"""Live training status in .factory/training-status.json, written atomically at every log step.

Dashboards and `factory status` poll this file, so it is always complete JSON. A NaN or exploding
loss stops training here, with the code E_NAN_LOSS, instead of burning hours on a dead run.
"""
from __future__ import annotations

import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from transformers import TrainerCallback

from factory import atomic

DIVERGENCE_FACTOR = 10.0  # loss this many times above its first logged value means divergence


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class TrainingStatus(TrainerCallback):
    def __init__(self, path: Path, total_epochs: float, watch_divergence: bool = True,
                 stage: str | None = None):
        self.path = path
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
        atomic.write_json(self.path, self.status)

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0, self._step0 = time.monotonic(), state.global_step
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
        if loss is not None:
            self._check_loss(float(loss), control)

    def on_save(self, args, state, control, **kwargs):
        self.write(checkpoint_at=_now(), step=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.write(running=False, step=state.global_step, error=self.diverged)

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
