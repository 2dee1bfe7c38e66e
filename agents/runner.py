"""Writes a gate's script and its run config into the project, and executes it.

The script is a plain Python file copied from agents/scripts/, so a person or a coding assistant can
read it and re-run it by hand with the exact command printed in its docstring. Everything a run
needs is in a JSON file beside it: config values are data read at run time, never pasted into code.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import deque
from importlib.resources import files
from pathlib import Path

from agents.gate import GateContext
from factory import atomic
from factory.errors import CATALOGUE, FactoryError
from factory.hashing import hash_bytes

TAIL_LINES = 30
STOP_GRACE_S = 10  # an interrupted script gets this long to exit before SIGKILL


def script_source(template: str) -> str:
    return files("agents.scripts").joinpath(f"{template}.py").read_text(encoding="utf-8")


def script_hash(template: str) -> str:
    """Part of every gate's inputs, as DVC hashes a stage's command: new code means a new run."""
    return hash_bytes(script_source(template).encode("utf-8"))


def write_script(ctx: GateContext, gate: str, run_config: dict,
                 template: str | None = None) -> tuple[Path, Path]:
    project = ctx.project
    script = project.scripts_dir / f"{gate}.py"
    config = project.scripts_dir / f"{gate}.json"
    atomic.write_text(script, script_source(template or gate))
    atomic.write_json(config, run_config)
    return script, config


def execute(ctx: GateContext, gate: str, argv: list[str] | None = None) -> None:
    """Run scripts/<gate>.py in a fresh process, logging to .factory/logs/<gate>.log.

    `argv` is what follows the interpreter when the script runs under a launcher, such as
    `-m accelerate.commands.launch --config_file ... scripts/finetune.py --config ...`.

    A script that fails for a reason it understands writes .factory/logs/<gate>.error.json with a
    catalogue code; otherwise any non-zero exit is E_SCRIPT_FAILED with the log's tail.
    """
    project = ctx.project
    log_path = project.logs_dir / f"{gate}.log"
    error_path = project.logs_dir / f"{gate}.error.json"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    error_path.unlink(missing_ok=True)
    command = [sys.executable,
               *(argv or [f"scripts/{gate}.py", "--config", f"scripts/{gate}.json"])]
    ctx.say(f"[{gate}] running: {' '.join(command[1:])}  (log: {project.rel(log_path)})")
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ python {' '.join(command[1:])}\n")  # what ran, for a re-run by hand
        # Its own session: a terminal's Ctrl-C reaches only factory, which decides what happens
        # to the script (`factory watch` lets the running gate finish on a first signal).
        proc = subprocess.Popen(_dies_with_parent(command), cwd=project.root,
                                env=_script_env(ctx.options.get("script_env")),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1,
                                pass_fds=_inherited(ctx), start_new_session=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                tail.append(line.rstrip("\n"))
                ctx.say(f"[{gate}] {line.rstrip()}")
            returncode = proc.wait()
        except BaseException:
            # KeyboardInterrupt included: the caller records the gate as interrupted, which is
            # only true once the script has really stopped.
            _stop(proc)
            raise
    if returncode != 0:
        raise _script_error(gate, returncode, error_path, log_path, project.rel(log_path), tail)


def _dies_with_parent(command: list[str]) -> list[str]:
    """On Linux, the command behind a tiny launcher that asks the kernel to SIGTERM the script
    when factory dies (PR_SET_PDEATHSIG survives exec).

    In its own session the script would otherwise outlive a `kill -9` of factory's process
    group. The launcher sets it in the child itself: a preexec_fn would do the same but is
    unsafe in a threaded parent such as `factory watch`.
    """
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *command[1:]]


_DIE_WITH_PARENT = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(143)  # factory died before the request took hold
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the script's process group, SIGKILL it after STOP_GRACE_S, and reap it."""
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    finally:  # also when a further interrupt cuts the wait short
        if proc.poll() is None:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    # The script leads its own process group, so this reaches any workers it started too.
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _inherited(ctx: GateContext) -> tuple[int, ...]:
    # Passing the lock keeps the project locked for as long as the script lives, even if the
    # factory process that started it is killed first.
    return (ctx.lock_fd,) if ctx.lock_fd is not None else ()


def _script_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The script's environment: ours, plus what the pipeline adds (a tracking run's id)."""
    env = {**os.environ, **(extra or {})}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _script_error(gate: str, returncode: int, error_path: Path, log_path: Path, log_rel: str,
                  tail: deque[str]) -> FactoryError:
    details = {"log": log_rel, "returncode": returncode, "tail": list(tail)}
    if error_path.exists():
        try:
            reported = json.loads(error_path.read_text())
        except ValueError:
            reported = {}
        code = reported.get("code")
        if code in CATALOGUE:
            return FactoryError(code, f"{gate}: {reported.get('message', '')}",
                                hint=reported.get("hint"), details={**details, **reported})
    last = next((line for line in reversed(tail) if line.strip()), "no output")
    return FactoryError("E_SCRIPT_FAILED",
                        f"scripts/{gate}.py exited with {returncode}: {last}", details=details)
