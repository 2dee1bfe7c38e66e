"""Crash-safe file writes.

A reader (another process, a dashboard, the next run after a SIGKILL) must only ever see the old
content or the new one, never half a file: write to a temp file in the same directory, fsync it,
rename it over the target, then fsync the directory so the rename itself survives a power cut.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    write_text(path, text)


class StagedJsonl:
    """A JSON-lines file written row by row into a temp file and put in place by commit().

    Streams any number of rows in constant memory; until commit() the target keeps its old
    content, and discard() (or an exception) leaves no trace of the new one.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                   dir=self.path.parent)
        self._tmp = Path(tmp)
        self._fh = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0

    def write(self, row: dict) -> None:
        self._fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        self.count += 1

    def commit(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)
        _fsync_dir(self.path.parent)

    def discard(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)


def append_line(path: Path, line: str) -> None:
    """Append one line with a single write(2) on an O_APPEND descriptor, so concurrent appenders
    never interleave inside a line and a crash leaves at most a torn final line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path) -> Any | None:
    """What write_json wrote, or None when the file is missing or unreadable: a reader polling
    a file that is being replaced, or one torn by a crash, tries again rather than failing."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_appended(path: Path) -> list[dict]:
    """The JSON lines append_line wrote, in order; a torn last line (a crash mid-append) and a
    missing file read as nothing rather than failing the reader."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def replace_dir(src: Path, dst: Path) -> None:
    """Move a fully written directory into place; the old one is removed only after the new one
    is complete, so an interrupted save never leaves a half-written checkpoint at `dst`."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = dst.with_name(f".{dst.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    if old.exists():
        shutil.rmtree(old)
    _fsync_dir(dst.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)
