"""What every reward module shares: the call signature, the error type, and how a reward finds a
file of the project it belongs to."""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Callable

Reward = Callable[[str, dict], float]


class RewardError(ValueError):
    """A reward cannot be built, or broke its contract when called. The message names the reward
    and says what was expected; callers turn it into E_REWARD."""


def project_file(spec: dict, field: str, root: Path | None) -> Path:
    """The existing file named by `spec[field]`, resolved inside the project `root`.

    A reward's files are the user's own (their reward code, their labels), so they must live in
    the project: the hashes that make a baseline stale only cover files there.
    """
    name, value = spec["name"], spec.get(field)
    where = f"reward {name} ({spec['type']}): {field}"
    if not value:
        raise RewardError(f"{where} is required")
    if root is None:
        raise RewardError(f"{where} {value!r} is a project file, but no project root was given "
                          f"to build()")
    if PurePosixPath(value).is_absolute() or Path(value).is_absolute():
        raise RewardError(f"{where} must be a path relative to the project, found {value!r}")
    base = Path(root).resolve()
    path = (base / value).resolve()
    if path != base and base not in path.parents:
        raise RewardError(f"{where} {value!r} resolves to {path}, outside the project {base}")
    if not path.is_file():
        raise RewardError(f"{where}: no file {value} in the project {base}")
    return path
