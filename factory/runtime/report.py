"""How a script tells the factory why it failed: a catalogue code in .factory/logs/<gate>.error.json."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from factory import atomic


class ScriptError(Exception):
    def __init__(self, code: str, message: str, hint: str | None = None, **details):
        super().__init__(message)
        self.code, self.message, self.hint, self.details = code, message, hint, details


def project_root(config_path: str) -> Path:
    """Scripts live in <project>/scripts/, so the project is the config file's grandparent."""
    return Path(config_path).resolve().parent.parent


def load_config(config_path: str) -> dict:
    return json.loads(Path(config_path).read_text(encoding="utf-8"))


def fail(root: Path, gate: str, error: ScriptError) -> int:
    """Record the error for the factory, print it for a person, return the exit status."""
    payload = {"code": error.code, "message": error.message, **error.details}
    if error.hint:
        payload["hint"] = error.hint
    atomic.write_json(root / ".factory" / "logs" / f"{gate}.error.json", payload)
    print(f"error {error.code}: {error.message}", file=sys.stderr)
    return 2
