"""The base model as gates see it: how scripts should load it, and what identifies its content."""
from __future__ import annotations

from agents.gate import GateContext
from factory.hashing import hash_json, hash_path
from factory.project import local_model_dir


def script_view(ctx: GateContext) -> dict:
    """The model section of a script's run config (paths relative to the project)."""
    m = ctx.config.model
    local = local_model_dir(ctx.project, m.name)
    return {"source": ctx.project.rel(local) if local else m.name, "local": local is not None,
            "revision": m.revision, "dtype": m.dtype, "max_length": m.max_length,
            "trust_remote_code": m.trust_remote_code}


def identity(ctx: GateContext) -> str | None:
    """Content hash of a local model folder; for a hub id, the id and pinned revision."""
    m = ctx.config.model
    local = local_model_dir(ctx.project, m.name)
    if local is not None:
        return hash_path(local, ctx.cache)
    return hash_json({"hub_id": m.name, "revision": m.revision})
