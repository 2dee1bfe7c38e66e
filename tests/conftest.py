from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

FACTORY = str(Path(sys.executable).with_name("factory"))
CLI_SCHEMAS = Path(__file__).resolve().parent.parent / "schemas" / "cli"


def check_shape(payload: dict) -> None:
    """Every --json document a test sees must match its command's schema in schemas/cli/."""
    import jsonschema

    name = payload.get("command") if payload.get("ok") is True else "error"
    path = CLI_SCHEMAS / f"{name}.schema.json"
    assert path.exists(), f"no JSON Schema for `factory {name} --json` in schemas/cli/"
    jsonschema.Draft202012Validator(json.loads(path.read_text())).validate(payload)


def factory(*args: str, cwd: Path | None = None, timeout: float = 900,
            env: dict | None = None) -> tuple[int, dict]:
    """Run the real `factory` console script with --json; return (exit code, parsed output)."""
    proc = subprocess.run([FACTORY, *args, "--json"], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    try:
        payload = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    check_shape(payload)
    return proc.returncode, payload


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    """A demo project (data, config, tiny model) built once by the real CLI, copied per test."""
    target = tmp_path_factory.mktemp("demo-template") / "demo"
    rc, out = factory("demo", str(target))
    assert rc == 0, out
    return target


@pytest.fixture
def demo_project(demo_template, tmp_path) -> Path:
    target = tmp_path / "demo"
    shutil.copytree(demo_template, target)
    return target


@pytest.fixture
def chat_project(tmp_path, demo_template) -> Path:
    """A fresh project from `factory init` with a small set of valid chat records.

    It uses the demo's tiny local model: the format gate measures token lengths with the
    model's tokenizer, and nothing can be downloaded here.
    """
    return make_chat_project(tmp_path / "proj", demo_template)


def make_chat_project(target: Path, demo_template: Path) -> Path:
    rc, out = factory("init", str(target))
    assert rc == 0, out
    shutil.copytree(demo_template / "models" / "base", target / "models" / "base")
    config_path = target / "training-config.json"
    config = json.loads(config_path.read_text())
    config["model"]["name"] = "models/base"
    config_path.write_text(json.dumps(config, indent=2))
    rows = [{"messages": [{"role": "user", "content": f"question {i}"},
                          {"role": "assistant", "content": f"answer {i}"}]} for i in range(300)]
    (target / "data" / "raw" / "chat.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))
    return target


def wait_for_checkpoint(project, proc, timeout=600):
    """Block until training has written a complete checkpoint (and kept going)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before a checkpoint was written"
        done = [c for c in project.glob("models/runs/*/stage-*/checkpoint-*")
                if (c / "trainer_state.json").exists() and (c / "scheduler.pt").exists()]
        if done:
            return done
        time.sleep(0.05)
    raise AssertionError("no checkpoint within the timeout")


def kill_after_checkpoint(project, *args: str) -> None:
    """Run `factory -C project <args>` and SIGKILL its whole process group once training has
    written a complete checkpoint: the crash a resume must survive."""
    import signal

    proc = subprocess.Popen([FACTORY, "-C", str(project), *args, "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for_checkpoint(project, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
