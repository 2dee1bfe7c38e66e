"""Run model-written Python where it can do no harm: its own process, a fresh temp dir, a time and
memory limit, no network and nothing of the project or the caller's environment.

Layers, each enough to stop the common accident on its own:
  * a separate process in its own session, killed with its whole group at the timeout;
  * rlimits: address space, CPU seconds, file size, no core dumps;
  * an empty environment (no tokens, no PYTHONPATH) and `python -I` (no user site, no cwd on path);
  * a network namespace with no interfaces (`unshare -rn`) where the kernel allows one;
  * an audit hook installed before the code runs that refuses sockets, new processes, native
    libraries and any file write or filesystem change outside the temp dir, and reads outside it
    and the Python installation.
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

GUARD = Path(__file__).with_name("_guard.py")
OUTPUT_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Result:
    returncode: int | None   # None when killed at the timeout
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@functools.lru_cache(maxsize=1)
def network_namespace() -> list[str]:
    """The prefix that runs a command without network, or [] where the kernel refuses one."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    try:
        probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [unshare, "-rn"] if probe.returncode == 0 else []


def run_python(code: str, *, timeout_s: float = 5.0, memory_mb: int = 256,
               stdin: str = "") -> Result:
    workdir = tempfile.mkdtemp(prefix="mf-sandbox-")
    try:
        main = Path(workdir) / "main.py"
        main.write_text(code, encoding="utf-8")
        command = [*network_namespace(), sys.executable, "-I", str(GUARD), str(main)]
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True,
                                preexec_fn=functools.partial(_limits, timeout_s, memory_mb))
        try:
            out, err = proc.communicate(stdin.encode(), timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            timed_out = True
        return Result(None if timed_out else proc.returncode, _text(out), _text(err), timed_out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _limits(timeout_s: float, memory_mb: int) -> None:
    import resource

    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = int(timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024, 16 * 1024 * 1024))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _text(data: bytes) -> str:
    return data[:OUTPUT_LIMIT].decode("utf-8", "replace")
