"""`factory push`: the upload plan, a real push through the real huggingface_hub client against a
loopback stand-in Hub (tests/hub_standin.py), verification by download and from_pretrained, and
the token: sent to the Hub, written nowhere."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import factory
from factory import registry
from factory.project import Project
from hub_standin import HubStandIn

FAKE_TOKEN = f"hf_standin{uuid.uuid4().hex}"
REPO = "standin-user/tiny-model"
PROMOTION = "v1-0123abcd"
CARD = ("---\nbase_model: \"models/base\"\nlibrary_name: peft\npipeline_tag: text-generation\n"
        "---\n\n# tiny v1-0123abcd\n\nA model card.\n")
CORPUS = [f"question {i} answer {i}" for i in range(200)] + ["the quick brown fox jumps"] * 20


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """A tiny base model, the same weights saved in shards, and a LoRA adapter on it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("hub-artifacts")
    build_tiny_model(out / "base", CORPUS)
    model = AutoModelForCausalLM.from_pretrained(out / "base")
    tokenizer = AutoTokenizer.from_pretrained(out / "base")
    model.save_pretrained(out / "sharded", max_shard_size="300KB")
    tokenizer.save_pretrained(out / "sharded")
    adapter = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                               task_type="CAUSAL_LM"))
    adapter.save_pretrained(out / "adapter")
    tokenizer.save_pretrained(out / "adapter")
    gguf = out / "gguf"
    gguf.mkdir()
    for quant in ("Q8_0", "F16"):  # push never parses them: any *.gguf in gguf/ goes along
        (gguf / f"tiny-{quant}.gguf").write_bytes(b"GGUF" + hashlib.sha256(quant.encode())
                                                 .digest() * 64)
    return out


@pytest.fixture
def server():
    hub = HubStandIn(FAKE_TOKEN).start()
    yield hub
    hub.stop()


def make_project(tmp_path: Path, artifacts: Path, outputs: dict[str, str], push: list[str],
                 revision: str = "main", repo_id: str | None = REPO,
                 promoted: bool = True) -> Path:
    """A project with promotion PROMOTION deployed from `outputs` (output -> artifact folder)."""
    root = tmp_path / "proj"
    rc, out = factory("init", str(root))
    assert rc == 0, out
    shutil.copytree(artifacts / "base", root / "models" / "base")
    config = json.loads((root / "training-config.json").read_text())
    config["model"]["name"] = "models/base"
    hub = {"push": push, "revision": revision, **({"repo_id": repo_id} if repo_id else {})}
    config["deploy"] = {"outputs": [*outputs, *(["hub"] if repo_id else [])], "hub": hub}
    (root / "training-config.json").write_text(json.dumps(config, indent=2))
    deployed = root / "models" / "deployed" / PROMOTION
    for output, source in outputs.items():
        shutil.copytree(artifacts / source, deployed / output)
    (deployed / "README.md").write_text(CARD)
    (deployed / "deploy-manifest.json").write_text(json.dumps({"outputs": sorted(outputs)}))
    (deployed / "eval-examples.jsonl").write_text('{"id": "a", "scores": {}}\n')
    promotions = [{"id": PROMOTION, "checkpoint_hash": "c" * 64,
                   "promoted_at": "2026-11-01T00:00:00+00:00", "metrics": {},
                   "outputs": {o: f"models/deployed/{PROMOTION}/{o}" for o in outputs}}]
    registry.write(Project.open(root), {"schema": 1, "current": PROMOTION if promoted else None,
                                        "promotions": promotions if promoted else []})
    return root


def hub_env(server: HubStandIn, tmp_path: Path, token: str = FAKE_TOKEN) -> dict:
    """The client pointed at the stand-in, with a login folder of its own (no saved token)."""
    home = tmp_path / "hf-home"
    return {"HF_ENDPOINT": server.url, "HF_TOKEN": token, "HUGGING_FACE_HUB_TOKEN": "",
            "HF_HOME": str(home), "HF_TOKEN_PATH": str(home / "token"),
            "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}


def expected_files(root: Path, layout: dict[str, str]) -> list[tuple]:
    """(path_in_repo, local, bytes, sha256) of every file a push must send, worked out here
    independently of factory.runtime.hub: repo folder -> deployed output folder."""
    deployed = root / "models" / "deployed" / PROMOTION
    rows = [("README.md", deployed / "README.md")]
    for prefix, output in layout.items():
        for path in sorted((deployed / output).rglob("*")):
            in_repo = prefix + path.relative_to(deployed / output).as_posix()
            if path.is_file() and in_repo != "README.md":
                rows.append((in_repo, path))
    return sorted((in_repo, path.relative_to(root).as_posix(), path.stat().st_size,
                   hashlib.sha256(path.read_bytes()).hexdigest()) for in_repo, path in rows)


def shown(files: list[dict]) -> list[tuple]:
    return [(f["path_in_repo"], f["local"], f["bytes"], f["sha256"]) for f in files]


def assert_token_written_nowhere(root: Path) -> None:
    hits = [p for p in root.rglob("*") if p.is_file() and FAKE_TOKEN.encode() in p.read_bytes()]
    assert hits == [], f"the token was written into {hits}"


def test_dry_run_prints_the_exact_plan_and_sends_nothing(tmp_path, artifacts, server):
    root = make_project(tmp_path, artifacts, {"merged": "base", "adapter": "adapter",
                                              "gguf": "gguf"}, ["merged", "adapter", "gguf"])
    rc, out = factory("-C", str(root), "push", "--dry-run", env=hub_env(server, tmp_path))
    assert rc == 0, out
    plan = out["result"]
    assert shown(plan["files"]) == expected_files(root, {"": "merged", "adapter/": "adapter",
                                                         "gguf/": "gguf"})
    paths = [f["path_in_repo"] for f in plan["files"]]
    assert {"config.json", "model.safetensors", "adapter/adapter_config.json",
            "gguf/tiny-Q8_0.gguf", "gguf/tiny-F16.gguf", "README.md"} <= set(paths)
    assert plan["layout"] == {"merged": "", "adapter": "adapter", "gguf": "gguf"}
    assert (plan["repo_id"], plan["revision"], plan["private"]) == (REPO, "main", True)
    assert plan["token"] == "HF_TOKEN" and FAKE_TOKEN not in json.dumps(out)
    assert out["next"]["command"] == "factory push"
    assert server.requests == [], "a dry run sends nothing"
    assert not (root / "scripts" / "push.py").exists()

    # The same plan from the CLI's own process, which imported none of the training libraries.
    heavy = ("torch", "transformers", "peft", "trl", "accelerate")
    probe = ("import json, sys\nfrom factory.cli import main\n"
             f"main(['-C', {str(root)!r}, 'push', '--dry-run', '--json'])\n"
             f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ, **hub_env(server, tmp_path)})
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []
    assert json.loads(proc.stdout)["result"]["files"] == plan["files"]
    assert server.requests == []


def test_push_lands_every_planned_file_and_verifies_it(tmp_path, artifacts, server):
    root = make_project(tmp_path, artifacts, {"merged": "base", "adapter": "adapter",
                                              "gguf": "gguf"}, ["merged", "adapter", "gguf"])
    rc, out = factory("-C", str(root), "push", env=hub_env(server, tmp_path), timeout=300)
    assert rc == 0, out
    record = out["result"]
    expected = expected_files(root, {"": "merged", "adapter/": "adapter", "gguf/": "gguf"})
    assert shown(record["files"]) == expected
    assert record["verified"] is True
    assert record["loaded"] == ["merged: LlamaForCausalLM", "adapter: PeftModelForCausalLM"]
    assert record["commit"] == server.repos[REPO].branches["main"]
    assert record["commit_url"].endswith(f"/{REPO}/commit/{record['commit']}")

    # Every planned file is on the Hub byte for byte, and nothing else but .gitattributes.
    remote = server.blobs(REPO)
    assert set(remote) == {row[0] for row in expected} | {".gitattributes"}
    for in_repo, local, size, sha in expected:
        assert remote[in_repo].data == (root / local).read_bytes(), in_repo
    assert all(remote[p].lfs for p in remote if p.endswith((".safetensors", ".gguf")))
    assert not remote["config.json"].lfs and server.repos[REPO].private

    # One commit; verification downloaded every file again.
    commits = [s for s in server.requests if s.method == "POST" and "/commit/" in s.path]
    assert len(commits) == 1
    fetched = {s.path.split(f"/resolve/{record['commit']}/", 1)[1] for s in server.requests
               if s.method == "GET" and "/resolve/" in s.path}
    assert fetched == {row[0] for row in expected} | {".gitattributes"}

    # The token went to the Hub API, never to the storage URL, and into no file.
    for seen in server.requests:
        wanted = None if seen.path.startswith("/_standin_lfs/") else f"Bearer {FAKE_TOKEN}"
        assert seen.authorization == wanted, seen
    written = json.loads((root / ".factory" / "pushes" / f"{PROMOTION}.json").read_text())
    assert written == record and written["promotion"] == PROMOTION
    noted = json.loads((root / ".factory" / "registry.json").read_text())["promotions"][-1]
    assert noted["pushes"][-1]["commit"] == record["commit"] and noted["pushes"][-1]["verified"]
    assert json.loads((root / "scripts" / "push.json").read_text())["repo_id"] == REPO
    assert_token_written_nowhere(root)


def test_sharded_weights_push_their_index_and_replace_stale_files(tmp_path, artifacts, server):
    root = make_project(tmp_path, artifacts, {"merged": "sharded"}, ["merged"],
                        revision="release")
    # What an earlier, unsharded push left: a model.safetensors that would shadow the index.
    server.seed(REPO, {"model.safetensors": b"old weights", "notes.txt": b"old"})
    rc, out = factory("-C", str(root), "push", env=hub_env(server, tmp_path), timeout=300)
    assert rc == 0, out
    record = out["result"]
    assert record["verified"] is True and record["loaded"] == ["merged: LlamaForCausalLM"]
    assert record["deleted"] == ["model.safetensors", "notes.txt"]
    remote = server.files(REPO, "release")
    index = json.loads(remote["model.safetensors.index.json"])
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and shards <= set(remote)
    assert "model.safetensors" not in remote and "notes.txt" not in remote
    assert "model.safetensors" in server.files(REPO, "main"), "main is left as it was"
    assert shown(record["files"]) == expected_files(root, {"": "merged"})
    assert_token_written_nowhere(root)


def test_verify_catches_a_hub_that_lost_or_changed_a_file(tmp_path, artifacts, server):
    root = make_project(tmp_path, artifacts, {"merged": "base"}, ["merged"])
    size = (artifacts / "base" / "config.json").stat().st_size
    # Same size, other bytes: only the content check can tell.
    server.tamper = {"config.json": b"{" + b" " * (size - 2) + b"}", "model.safetensors": None}
    rc, out = factory("-C", str(root), "push", env=hub_env(server, tmp_path), timeout=300)
    assert rc == 1 and out["error"]["code"] == "E_HUB", out
    problems = out["error"]["details"]["problems"]
    assert [p.split(":")[0] for p in problems] == ["config.json", "model.safetensors"]
    assert "git blob" in problems[0] and "not in the repository" in problems[1]
    assert not (root / ".factory" / "pushes" / f"{PROMOTION}.json").exists()


@pytest.mark.parametrize("missing", ["model.safetensors.index.json", "config.json",
                                     "model-00003-of-00010.safetensors", "tokenizer.json"])
def test_a_missing_required_file_is_refused_before_anything_is_sent(tmp_path, artifacts,
                                                                    server, missing):
    root = make_project(tmp_path, artifacts, {"merged": "sharded"}, ["merged"])
    (root / "models" / "deployed" / PROMOTION / "merged" / missing).unlink()
    commands = [["push", "--dry-run"]] + ([["push"]] if missing.endswith("index.json") else [])
    for command in commands:
        rc, out = factory("-C", str(root), *command, env=hub_env(server, tmp_path))
        assert rc == 1 and out["error"]["code"] == "E_HUB", out
        assert f"models/deployed/{PROMOTION}/merged/{missing}" in out["error"]["message"]
        assert out["error"]["details"]["missing"] == [
            f"models/deployed/{PROMOTION}/merged/{missing}"]
    assert server.requests == []


def test_no_token_is_refused_before_any_request(tmp_path, artifacts, server):
    root = make_project(tmp_path, artifacts, {"adapter": "adapter"}, ["adapter"])
    env = hub_env(server, tmp_path, token="")
    rc, out = factory("-C", str(root), "push", "--dry-run", env=env)
    assert rc == 0 and out["result"]["token"] is None
    assert out["next"]["command"] is None and "HF_TOKEN" in out["next"]["reason"]
    rc, out = factory("-C", str(root), "push", env=env)
    assert rc == 2 and out["error"]["code"] == "E_HUB_AUTH", out
    assert server.requests == []
    assert not (root / ".factory" / "pushes" / f"{PROMOTION}.json").exists()


@pytest.mark.parametrize("repo_id,promoted,code", [(None, True, "E_CONFIG"),
                                                   (REPO, False, "E_NO_PROMOTION")])
def test_push_needs_a_repo_and_a_promotion(tmp_path, artifacts, server, repo_id, promoted,
                                           code):
    root = make_project(tmp_path, artifacts, {"adapter": "adapter"}, ["adapter"],
                        repo_id=repo_id, promoted=promoted)
    for command in (["push", "--dry-run"], ["push"]):
        rc, out = factory("-C", str(root), *command, env=hub_env(server, tmp_path))
        assert rc == 2 and out["error"]["code"] == code, out
    rc, out = factory("-C", str(root), "push", "--promotion", "v9-nope",
                      env=hub_env(server, tmp_path))
    assert out["error"]["code"] == ("E_CONFIG" if repo_id is None else "E_NO_PROMOTION")
    assert server.requests == []
