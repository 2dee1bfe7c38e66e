"""User rewards: a Python function in a file of the project, `function(answer, context) -> number`.

It is imported into this process, not run in the sandbox: it is the project owner's own code, as
trusted as training-config.json. Model-written code never goes this way; it runs in `sandbox`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import numbers
import sys
from pathlib import Path

from factory.rewards.base import Reward, RewardError, project_file


def python(spec: dict, root: Path | None) -> Reward:
    path = project_file(spec, "file", root)
    function = _load(path, spec)
    where = f"reward {spec['name']} ({spec['file']}:{spec.get('function') or 'reward'})"

    def reward(answer: str, context: dict) -> float:
        # A copy, so one call cannot change what the next reward or example sees.
        value = function(answer, dict(context))
        if not isinstance(value, numbers.Real):  # int, float, bool, numpy scalars
            raise RewardError(f"{where} must return a number, returned {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            raise RewardError(f"{where} must return a finite number, returned {value}")
        return value
    return reward


def _load(path: Path, spec: dict):
    name, shown = spec["name"], spec["file"]
    # A name of its own per file, registered while it runs, so dataclasses and pickling inside
    # the user's module find it, and two rewards never share one module object.
    module_name = "factory_user_reward_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # the user's module may raise anything at import
        del sys.modules[module_name]
        raise RewardError(f"reward {name} (python): importing {shown} raised "
                          f"{type(exc).__name__}: {exc}") from exc
    function = getattr(module, spec.get("function") or "reward", None)
    if not callable(function):
        raise RewardError(f"reward {name} (python): {shown} defines no function "
                          f"{spec.get('function') or 'reward'}(answer, context)")
    return function
