"""One run per project at a time.

The lock is an advisory `flock` on .factory/lock, so the kernel releases it when its holder dies:
a SIGKILLed run never leaves a lock that has to be removed by hand. The holder writes its pid and
command into the file so the refusal can say who holds it. The descriptor is inherited by the gate's
script, so a training process keeps the project locked until it really exits (on Linux it is
also told to stop when its factory process dies: see agents/runner.py).
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

from factory.errors import FactoryError
from factory.project import Project
from factory.state import now


class ProjectLock:
    def __init__(self, project: Project):
        self.path: Path = project.lock_file
        self.fd: int | None = None

    def __enter__(self) -> "ProjectLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder() or {}
            raise FactoryError(
                "E_LOCKED",
                f"project is locked by pid {holder.get('pid', '?')} "
                f"({holder.get('command', 'unknown command')}, since {holder.get('since', '?')})",
                details={"holder": holder}) from None
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "command": " ".join(sys.argv[1:]) or "factory",
                "since": now()}
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def holder(self) -> dict | None:
        """Who holds the lock now, or None when nobody does (a dead holder's note is ignored)."""
        if not self.is_held():
            return None
        try:
            text = self.path.read_text()
        except OSError:
            return None
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None

    def is_held(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
