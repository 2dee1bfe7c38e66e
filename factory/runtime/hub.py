"""Pushing a deployed promotion to the Hugging Face Hub, and proving what landed there.

`plan` says exactly what would be sent (every file, its place in the repo, size and sha256) and
refuses, before any byte leaves the machine, when a file a loadable repository needs is missing:
a sharded push without model.safetensors.index.json uploads fine and then loads nothing
(unsloth#2355). `push` sends the plan as one commit, removes what an earlier push left that the
plan does not hold (a stale model.safetensors would shadow a new sharded index), then lists the
remote files against the plan, downloads the repository again and loads it with from_pretrained.

The token is huggingface_hub's business alone: it reads HF_TOKEN or the `hf auth login` file
itself. Nothing here reads, passes, prints or writes it; `token_source` only says where one is.
torch and transformers are imported inside the verify step, so a dry run stays light.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from factory.hashing import hash_file
from factory.runtime.report import ScriptError

CARD = "README.md"
# The Hub writes .gitattributes itself when it creates a repository; a push keeps it.
HUB_OWNED = {".gitattributes"}
TOKENIZER_VOCAB = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model")
WEIGHTS = {"merged": ("model.safetensors", "pytorch_model.bin"),
           "adapter": ("adapter_model.safetensors", "adapter_model.bin")}
MISSING_HINT = ("Re-run `factory run deploy --force` to write the promotion's outputs again, or "
                "drop the output from deploy.hub.push; nothing was uploaded.")


# --- the plan -------------------------------------------------------------------------------

def token_source() -> str | None:
    """Where huggingface_hub will find a token ("HF_TOKEN", "hf auth login"), or None."""
    from huggingface_hub import constants

    if any((os.environ.get(v) or "").strip() for v in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")):
        return "HF_TOKEN"
    token_file = Path(constants.HF_TOKEN_PATH)
    if token_file.is_file() and token_file.stat().st_size > 0:
        return "hf auth login"
    return None


def layout(push: list[str]) -> dict[str, str]:
    """Output -> folder in the repo. The first of merged/adapter goes to the root, so
    from_pretrained(repo_id) loads it; the other keeps its own name as a subfolder."""
    models = [o for o in push if o in WEIGHTS]
    folders = {o: o if n else "" for n, o in enumerate(models)}
    if "gguf" in push:
        folders["gguf"] = "gguf"
    return folders


def plan(deployed_dir: Path, push: list[str], repo_id: str, revision: str, private: bool,
         *, root: Path | None = None) -> dict:
    """The exact upload: every file with its path in the repo, local path (relative to the
    project), bytes and sha256. `root` is the project (default: deployed_dir is
    <project>/models/deployed/<id>). Raises E_HUB naming every missing required file."""
    deployed_dir = Path(deployed_dir).resolve()
    root = Path(root).resolve() if root else deployed_dir.parents[2]
    folders = layout(push)
    missing = [root_rel(root, p) for output in folders
               for p in missing_files(deployed_dir / output, output)]
    if not (deployed_dir / CARD).is_file():
        missing.append(root_rel(root, deployed_dir / CARD))
    if missing:
        raise ScriptError("E_HUB", f"refusing to push {repo_id}: {len(missing)} required "
                                   f"file(s) missing: {', '.join(missing)}",
                          hint=MISSING_HINT, missing=missing)
    files = [entry for output, folder in folders.items()
             for entry in _entries(root, deployed_dir / output, folder, output)]
    files.append(_entry(root, deployed_dir / CARD, CARD))
    files.sort(key=lambda f: f["path_in_repo"])
    return {"repo_id": repo_id, "revision": revision, "private": private,
            "deployed_dir": root_rel(root, deployed_dir), "layout": folders,
            "files": files, "bytes": sum(f["bytes"] for f in files), "token": token_source()}


def missing_files(folder: Path, output: str) -> list[Path]:
    """What `output` needs to be loadable from the Hub and is not in `folder`."""
    if not folder.is_dir():  # deploy did not write this output for the promotion
        return [folder]
    if output == "gguf":
        return [] if any(folder.glob("*.gguf")) else [folder / "*.gguf"]
    needed = ["config.json", "generation_config.json"] if output == "merged" \
        else ["adapter_config.json"]
    missing = [folder / name for name in [*needed, "tokenizer_config.json"]
               if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in TOKENIZER_VOCAB):
        missing.append(folder / TOKENIZER_VOCAB[0])
    return missing + _missing_weights(folder, WEIGHTS[output])


def _missing_weights(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """A single weights file, or an index with every shard it names."""
    if any((folder / name).is_file() for name in names):
        return []
    for name in names:
        index = folder / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [folder / s for s in shards if not (folder / s).is_file()]
    stem = names[0].removesuffix(".safetensors")
    if any(folder.glob(f"{stem}-*-of-*.safetensors")):  # shards without their index
        return [folder / f"{names[0]}.index.json"]
    return [folder / names[0]]


def _entries(root: Path, folder: Path, prefix: str, output: str) -> list[dict]:
    paths = sorted(folder.glob("*.gguf")) if output == "gguf" else sorted(
        p for p in folder.rglob("*") if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    entries = []
    for path in paths:
        in_repo = "/".join(filter(None, [prefix, path.relative_to(folder).as_posix()]))
        if in_repo != CARD:  # PEFT's stub README: the promotion's model card replaces it
            entries.append(_entry(root, path, in_repo))
    return entries


def _entry(root: Path, path: Path, in_repo: str) -> dict:
    return {"path_in_repo": in_repo, "local": root_rel(root, path),
            "bytes": path.stat().st_size, "sha256": hash_file(path)}


def root_rel(root: Path, path: Path) -> str:
    return Path(path).resolve().relative_to(root).as_posix()


# --- the push -------------------------------------------------------------------------------

def push(plan: dict, root: Path, *, verify: bool = True, base_model: dict | None = None,
         message: str = "Upload model from model-factory") -> dict:
    """Send `plan` as one commit and return the push record (no token in it).

    `base_model` is the project's model section as scripts see it (see agents/base_model.py),
    used to load an adapter when verifying; without it, the base its adapter_config names.
    """
    if token_source() is None:
        raise ScriptError("E_HUB_AUTH", "no Hugging Face token: HF_TOKEN is not set and "
                                        "`hf auth login` has not been run; nothing was sent")
    from huggingface_hub import HfApi

    api = HfApi()
    repo_id, revision = plan["repo_id"], plan["revision"]
    with hub_step(f"create the repository {repo_id}"):
        url = api.create_repo(repo_id, private=plan["private"], exist_ok=True)
        if revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
    stale = _stale_files(api, plan)
    with hub_step(f"upload {len(plan['files'])} files to {repo_id}@{revision}"):
        commit = api.create_commit(repo_id, _operations(plan, root, stale),
                                   commit_message=message, revision=revision)
    record = {"repo_id": repo_id, "revision": revision, "url": str(url),
              "commit": commit.oid, "commit_url": commit.commit_url, "files": plan["files"],
              "deleted": stale, "verified": False, "loaded": []}
    if verify:
        record["loaded"] = check(api, plan, root, commit.oid, base_model)
        record["verified"] = True
    return record


@contextmanager
def hub_step(step: str):
    """Turn what huggingface_hub raises during `step` into E_HUB, keeping the cause."""
    from huggingface_hub.errors import HfHubHTTPError

    # HfHubHTTPError's bases are the HTTP client's own error (requests, httpx or httpx2,
    # depending on the huggingface_hub version), which also covers connection failures; the
    # client raises ValueError/RuntimeError for responses it cannot use.
    failures = (HfHubHTTPError, *HfHubHTTPError.__bases__, OSError, ValueError, RuntimeError)
    try:
        yield
    except failures as exc:
        raise ScriptError("E_HUB", f"could not {step}: {type(exc).__name__}: {exc}",
                          step=step) from exc


def _stale_files(api, plan: dict) -> list[str]:
    with hub_step(f"list {plan['repo_id']}@{plan['revision']}"):
        remote = _remote_files(api, plan["repo_id"], plan["revision"])
    planned = {f["path_in_repo"] for f in plan["files"]} | HUB_OWNED
    return sorted(p for p in remote if p not in planned)


def _remote_files(api, repo_id: str, revision: str) -> dict:
    from huggingface_hub import RepoFile

    return {f.path: f for f in api.list_repo_tree(repo_id, recursive=True, revision=revision)
            if isinstance(f, RepoFile)}


def _operations(plan: dict, root: Path, stale: list[str]) -> list:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    adds = [CommitOperationAdd(path_in_repo=f["path_in_repo"], path_or_fileobj=root / f["local"])
            for f in plan["files"]]
    return adds + [CommitOperationDelete(path_in_repo=p) for p in stale]


# --- verification ---------------------------------------------------------------------------

def check(api, plan: dict, root: Path, commit: str, base_model: dict | None) -> list[str]:
    """Compare the remote listing and a fresh download with the plan, then load every pushed
    model. Returns what was loaded; any difference is E_HUB."""
    _check_listing(api, plan, root, commit)
    from huggingface_hub import snapshot_download

    # Downloaded beside the project: a multi-GB model may not fit into /tmp.
    with tempfile.TemporaryDirectory(prefix="hub-verify-", dir=root / ".factory") as tmp:
        with hub_step(f"download {plan['repo_id']}@{commit[:12]}"):
            snapshot_download(plan["repo_id"], revision=commit, local_dir=tmp)
        _check_download(plan, Path(tmp), commit)
        return [load(Path(tmp) / folder, output, base_model, root)
                for output, folder in plan["layout"].items() if output in WEIGHTS]


def _check_listing(api, plan: dict, root: Path, commit: str) -> None:
    from huggingface_hub.utils.sha import git_hash

    with hub_step(f"list {plan['repo_id']}@{commit[:12]}"):
        remote = _remote_files(api, plan["repo_id"], commit)
    problems = []
    for f in plan["files"]:
        got = remote.get(f["path_in_repo"])
        if got is None:
            problems.append(f"{f['path_in_repo']}: not in the repository")
        elif got.size != f["bytes"]:
            problems.append(f"{f['path_in_repo']}: {got.size} bytes, planned {f['bytes']}")
        elif got.lfs is not None and got.lfs.sha256 != f["sha256"]:
            problems.append(f"{f['path_in_repo']}: LFS sha256 {got.lfs.sha256[:12]}, planned "
                            f"{f['sha256'][:12]}")
        elif got.lfs is None and got.blob_id != git_hash((root / f["local"]).read_bytes()):
            problems.append(f"{f['path_in_repo']}: git blob {got.blob_id[:12]} is not the "
                            f"local file's")
    planned = {f["path_in_repo"] for f in plan["files"]} | HUB_OWNED
    problems += [f"{p}: in the repository but not in the plan" for p in sorted(remote)
                 if p not in planned]
    _fail_on(problems, plan, commit, "listing")


def _check_download(plan: dict, local: Path, commit: str) -> None:
    problems = []
    for f in plan["files"]:
        path = local / f["path_in_repo"]
        if not path.is_file():
            problems.append(f"{f['path_in_repo']}: not downloaded")
        elif hash_file(path) != f["sha256"]:
            problems.append(f"{f['path_in_repo']}: downloaded bytes differ from the local file")
    _fail_on(problems, plan, commit, "download")


def _fail_on(problems: list[str], plan: dict, commit: str, what: str) -> None:
    if problems:
        raise ScriptError("E_HUB", f"{plan['repo_id']}@{plan['revision']} does not match the "
                                   f"plan ({what}): {'; '.join(problems)}",
                          problems=problems, commit=commit)


def load(folder: Path, output: str, base_model: dict | None, root: Path) -> str:
    """Load a downloaded model the way its users will; E_HUB when it does not load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(folder)
        if output == "merged":
            model = AutoModelForCausalLM.from_pretrained(folder)
        else:
            from peft import PeftModel

            model = PeftModel.from_pretrained(_base(folder, base_model, root), folder)
    except (OSError, ValueError, KeyError, RuntimeError, ScriptError) as exc:
        raise ScriptError("E_HUB", f"the pushed {output} does not load with from_pretrained: "
                                   f"{type(exc).__name__}: {exc}") from exc
    loaded = f"{output}: {type(model).__name__}"
    del model  # the next output loads into the memory this one held
    return loaded


def _base(folder: Path, base_model: dict | None, root: Path):
    if base_model is not None:
        from factory.runtime import models

        return models.load(base_model, root)[0]
    from transformers import AutoModelForCausalLM

    config = json.loads((folder / "adapter_config.json").read_text())
    return AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"])
