"""Which files an answer was computed from, each with its stat signature.

`factory status` and `factory next` must answer in a blink, and validating the config alone costs
more than that. So the answer is remembered together with the signature (size, mtime, inode, ctime)
of every file and folder it was computed from, and is reused while each signature is unchanged,
as git's index and DVC's state do. Content hashes still decide staleness: the witness only says
when they need not be recomputed.

While `recording()` is active, three things add to the witness: hashing (every file hashed or
found in the hash cache, every folder walked, every path found missing), explicit `saw()` calls for
paths probed by existence, and an audit hook that sees every file opened for reading.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_active: dict[str, list | None] | None = None
_scope: str = ""
_hooked = False


def signature(path: str | Path) -> list | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def saw(path: str | Path) -> None:
    """Note a path (existing or not) the current answer depends on."""
    if _active is not None:
        key = os.path.abspath(path)
        if key.startswith(_scope):
            _active.setdefault(key, signature(key))


@contextmanager
def recording(root: Path) -> Iterator[dict[str, list | None]]:
    """Collect the witness of everything under `root` read inside the block."""
    global _active, _scope, _hooked
    if not _hooked:
        sys.addaudithook(_on_audit)
        _hooked = True
    _active, _scope = {}, os.path.join(os.path.abspath(root), "")
    try:
        yield _active
    finally:
        _active = None


def unchanged(witness: dict[str, list | None]) -> bool:
    return all(signature(path) == sig for path, sig in witness.items())


def _on_audit(event: str, args: tuple) -> None:
    # Only reads count: a file we write (a temp file renamed into place) is not a source.
    if _active is None or event != "open":
        return
    path, mode, flags = args
    if not isinstance(path, (str, Path)):
        return
    if mode is not None:
        reading = "r" in mode and not any(c in mode for c in "+wax")
    else:
        reading = (flags & os.O_ACCMODE) == os.O_RDONLY and not flags & os.O_CREAT
    if reading:
        saw(path)
