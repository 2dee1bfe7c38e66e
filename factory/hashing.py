"""Content hashes that decide what is stale.

As in DVC, a gate is up to date when the hashes of its inputs equal the ones recorded when it last
passed; timestamps never decide. Hashing a multi-GB model on every `factory status` would be too
slow, so file hashes are cached by (size, mtime_ns, inode): the cache only skips re-reading bytes
whose stat is unchanged, the decision itself is still made on content hashes.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from factory import atomic, witness

_CHUNK = 1 << 20
# Files that never change what a directory means: OS litter and our own temp files.
_IGNORED_NAMES = {".DS_Store", "Thumbs.db", ".gitkeep"}


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_json(obj: Any) -> str:
    """Hash of canonical JSON: key order and whitespace never change the hash."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hash_bytes(canonical.encode("utf-8"))


class HashCache:
    """Remembers file hashes by stat signature, persisted in the project's .factory/."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self._entries: dict[str, list] = {}
        self._dirty = False
        if path is not None and path.exists():
            try:
                self._entries = json.loads(path.read_text())
            except (OSError, ValueError):
                self._entries = {}  # a lost cache only costs re-hashing

    def file(self, path: Path) -> str:
        witness.saw(path)
        st = path.stat()
        signature = [st.st_size, st.st_mtime_ns, st.st_ino]
        key = str(path.resolve())
        hit = self._entries.get(key)
        if hit is not None and hit[:3] == signature:
            return hit[3]
        digest = _hash_file(path)
        self._entries[key] = [*signature, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        if self.path is not None and self._dirty:
            atomic.write_json(self.path, self._entries)
            self._dirty = False


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_file(path: Path, cache: HashCache | None = None) -> str:
    return (cache or HashCache()).file(Path(path))


def hash_path(path: Path, cache: HashCache | None = None) -> str | None:
    """Hash a file, or a directory as the sorted list of (relative path, file hash).

    Returns None when the path does not exist, so "missing" is a state that compares unequal to
    any content.
    """
    path = Path(path)
    cache = cache or HashCache()
    witness.saw(path)
    if path.is_file():
        return cache.file(path)
    if not path.is_dir():
        return None
    entries = []
    for root, dirs, files in os.walk(path):
        witness.saw(root)  # a file added to or removed from a folder changes its mtime
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name in _IGNORED_NAMES or name.startswith("."):
                continue
            full = Path(root) / name
            entries.append([full.relative_to(path).as_posix(), cache.file(full)])
    return hash_json(entries)


def short(digest: str | None) -> str:
    return digest[:12] if digest else "-"
