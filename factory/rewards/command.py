"""The command reward: a program of the user's scores each answer (a story or browser test runner,
a linter, a checker written in any language).

The program is the project owner's, as trusted as a python reward, so it runs with this process's
environment. The answer is the model's: it reaches the program only as data (stdin or a temp
file), the argv comes from the config alone and no shell is ever involved, so `$(...)` or `; rm`
in an answer stay text.

Contract. `command` (an argv list) runs in `cwd` (inside the project; default its root) and gets
the answer per `input`:

    stdin   the answer text on stdin
    file    the answer in a temp file; `{file}` in an argument is replaced by its path
    json    on stdin, {"completion", "prompt", "reference", "id", "tools", "tests", "meta"}

It must exit 0 within `timeout_s` (else its whole process group is killed) and print on stdout a
JSON object {"score": number, "details": any} or a bare JSON number; when stdout has other lines
too (a runner's banner), its last non-empty line is read. The score must be finite.

Scores are cached (`cache`, default on) in .factory/cache/rewards/<sha256>.json, keyed by
everything that reaches the program: argv, the executable found, cwd, the input mode, what was
sent (the answer, or the whole JSON document) and the content of the project files it runs or
reads (a file named in argv, the executable when it is a project file, `depends_on`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from factory import atomic
from factory.hashing import hash_path  # the project's content hashes, for files and folders
from factory.rewards.base import Reward, RewardError

PLACEHOLDER = "{file}"
CACHE_DIR = Path(".factory") / "cache" / "rewards"
CACHE_VERSION = 1  # part of the key: a new meaning of an entry must never read an old one
SHOWN_CHARS = 200
STDERR_TAIL = 600
KILL_GRACE_S = 5.0
EXPECTED = ('one JSON object {"score": <finite number>, "details": <anything>} or a bare number '
            'on stdout')


@dataclass(frozen=True)
class Setup:
    """What build time resolved once, so each call only runs the program."""
    where: str          # "reward <name> (command)", the start of every message
    argv: list[str]     # as configured, `{file}` unreplaced
    executable: Path
    workdir: Path
    root: Path
    mode: str
    timeout_s: float
    cache: bool
    files: dict[str, str | None]  # project-relative path -> content digest


def command(spec: dict, root: Path | None) -> Reward:
    setup = _setup(spec, root)

    def reward(answer: str, context: dict) -> float:
        sent = _message(setup.mode, answer, context)
        path = setup.root / CACHE_DIR / f"{_cache_key(setup, sent)}.json" if setup.cache else None
        cached = _cached(path) if path else None
        if cached is not None:
            return cached
        score, details = _score(setup, sent)
        if path:
            atomic.write_json(path, {"score": score, "details": details, "command": setup.argv})
        return score
    return reward


# --------------------------------------------------------------------------- build time

def _setup(spec: dict, root: Path | None) -> Setup:
    where = f"reward {spec['name']} (command)"
    argv = list(spec.get("command") or [])
    if not argv or not argv[0]:
        raise RewardError(f"{where}: command is required, the program and its arguments as a "
                          f"list, e.g. [\"python\", \"rewards/story.py\"]")
    if root is None:
        raise RewardError(f"{where} runs inside the project, but no project root was given to "
                          f"build()")
    base = Path(root).resolve()
    workdir = _workdir(where, spec.get("cwd"), base)
    executable = _executable(where, argv[0], workdir, base)
    for value in spec.get("depends_on") or []:
        if not _inside(where, "depends_on", value, base, base).exists():
            raise RewardError(f"{where}: depends_on: no file or folder {value} in the project "
                              f"{base}")
    return Setup(where=where, argv=argv, executable=executable, workdir=workdir, root=base,
                 mode=spec.get("input") or "stdin", timeout_s=float(spec.get("timeout_s") or 5.0),
                 cache=spec.get("cache", True) is not False,
                 files={name: hash_path((base / name).resolve()) for name in files(spec, base)})


def _inside(where: str, field: str, value: str, start: Path, base: Path) -> Path:
    # Same rule as base.project_file: relative, and still inside once symlinks are followed.
    if PurePosixPath(value).is_absolute() or Path(value).is_absolute():
        raise RewardError(f"{where}: {field} must be a path relative to the project, found "
                          f"{value!r}")
    path = (start / value).resolve()
    if path != base and base not in path.parents:
        raise RewardError(f"{where}: {field} {value!r} resolves to {path}, outside the project "
                          f"{base}")
    return path


def _workdir(where: str, cwd: str | None, base: Path) -> Path:
    if not cwd:
        return base
    path = _inside(where, "cwd", cwd, base, base)
    if not path.is_dir():
        raise RewardError(f"{where}: cwd: no folder {cwd} in the project {base}")
    return path


def _executable(where: str, program: str, workdir: Path, base: Path) -> Path:
    """argv[0] as the OS would find it: a bare name on PATH; a relative path from the working
    directory (and then it must stay in the project, symlinks followed); an absolute path as
    given. The path is returned unresolved: a venv's python must not become its target."""
    if "/" not in program and os.sep not in program:
        found = shutil.which(program)
        if found is None:
            raise RewardError(f"{where}: command {program!r} is not on PATH; install it, or give "
                              f"its path")
        return Path(found)
    path = Path(program)
    if not path.is_absolute():
        _inside(where, "command[0]", program, workdir, base)
        path = workdir / program
    if not path.is_file():
        raise RewardError(f"{where}: command {program!r}: no such file (looked at {path})")
    if not os.access(path, os.X_OK):
        raise RewardError(f"{where}: command {program!r} is not executable; chmod +x it, or "
                          f"name its interpreter first, e.g. [\"bash\", {program!r}]")
    return path


def files(spec: dict, root: Path) -> list[str]:
    """The project files whose content the scores depend on, project-relative, once each:
    argv[0] and any other argument that names a file of the project (found from the working
    directory, as the program finds it), then `depends_on` as written. Never raises: a missing
    file is simply not named (or, in depends_on, hashes to nothing), and build() says why."""
    base = Path(root).resolve()
    return list(dict.fromkeys([*_named_in_argv(spec, base), *(spec.get("depends_on") or [])]))


def _named_in_argv(spec: dict, base: Path) -> list[str]:
    argv = spec.get("command") or []
    if not argv:
        return []
    program = argv[0]
    if program and "/" not in program and os.sep not in program:
        program = shutil.which(program) or ""
    # Options and the placeholder are not files; anything else may be (`python rewards/x.py`).
    named = [program, *(a for a in argv[1:] if not a.startswith("-") and PLACEHOLDER not in a)]
    found = []
    for value in filter(None, named):
        try:
            workdir = (base / spec["cwd"]).resolve() if spec.get("cwd") else base
            path = (workdir / value).resolve()  # an absolute value stays itself
            if path.is_file() and base in path.parents:
                found.append(path.relative_to(base).as_posix())
        except (OSError, ValueError):  # code passed with -c, a NUL byte: not a path
            continue
    return found


# --------------------------------------------------------------------------- each call

def _message(mode: str, answer: str, context: dict) -> str:
    """What the program is sent: the answer itself, or (json) a document with its context."""
    if mode != "json":
        return answer
    document = {"completion": answer, "prompt": context.get("messages") or [],
                "reference": context.get("reference") or "", "id": context.get("id"),
                "tools": context.get("tools"), "tests": context.get("tests"),
                "meta": context.get("meta") or {}}
    # Sorted keys: the same document is the same bytes, hence the same cache key.
    return json.dumps(document, ensure_ascii=False, sort_keys=True, default=str)


def _cache_key(setup: Setup, sent: str) -> str:
    key = {"v": CACHE_VERSION, "argv": setup.argv, "executable": str(setup.executable),
           "cwd": setup.workdir.relative_to(setup.root).as_posix(), "input": setup.mode,
           "files": setup.files, "sent": sent}
    return hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _cached(path: Path) -> float | None:
    """A cached score, or None when there is none or the entry is unreadable (a torn or edited
    file is recomputed and overwritten, never trusted)."""
    try:
        score = json.loads(path.read_text(encoding="utf-8")).get("score")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        return None
    return float(score)


def _score(setup: Setup, sent: str) -> tuple[float, object]:
    if setup.mode != "file":
        return _judge(setup, _run(setup, setup.argv, sent.encode("utf-8")))
    scratch = tempfile.mkdtemp(prefix="mf-reward-")
    try:
        answer = Path(scratch) / "completion.txt"
        answer.write_text(sent, encoding="utf-8")
        # Only our temp path is put into the argv, never the answer itself.
        argv = [setup.argv[0], *(a.replace(PLACEHOLDER, str(answer)) for a in setup.argv[1:])]
        return _judge(setup, _run(setup, argv, None))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class Finished:
    returncode: int | None  # None when killed at the timeout
    stdout: str
    stderr: str


def _run(setup: Setup, argv: list[str], stdin: bytes | None) -> Finished:
    """Run argv (no shell) in its own session; at the timeout kill its whole process group."""
    try:
        # argv[0] stays as configured (what the program sees); `executable` is what runs.
        proc = subprocess.Popen(argv, executable=setup.executable, cwd=setup.workdir,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:  # removed or made unexecutable since build time
        raise RewardError(f"{setup.where}: cannot start {_shown(setup.argv)}: {exc}") from exc
    try:
        out, err = proc.communicate(stdin, timeout=setup.timeout_s)
        return Finished(proc.returncode, _text(out), _text(err))
    except subprocess.TimeoutExpired:
        _kill(proc)
        try:
            out, err = proc.communicate(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:  # a grandchild left the group and holds a pipe open
            out, err = b"", b""
        return Finished(None, _text(out), _text(err))
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C): never leave the program running
            _kill(proc)
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe:
                pipe.close()


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _judge(setup: Setup, done: Finished) -> tuple[float, object]:
    """The score and details from a finished run, or a RewardError saying what went wrong."""
    where, shown = setup.where, _shown(setup.argv)
    if done.returncode is None:
        raise RewardError(f"{where}: {shown} did not finish within timeout_s={setup.timeout_s:g} "
                          f"s and was killed; make it faster or raise timeout_s (at most 300)")
    if done.returncode != 0:
        said = (f"its stderr ends: {done.stderr.strip()[-STDERR_TAIL:]}" if done.stderr.strip()
                else f"nothing on stderr; its stdout ends: {done.stdout.strip()[-STDERR_TAIL:]}")
        raise RewardError(f"{where}: {shown} exited with status {done.returncode}; {said}")
    return parse(f"{where}: {shown}", done.stdout)


def parse(where: str, stdout: str) -> tuple[float, object]:
    """(score, details) from the program's stdout: all of it as JSON, else its last line."""
    text = stdout.strip()
    lines = text.splitlines()
    value = _json(text)
    if value is None and len(lines) > 1:
        value = _json(lines[-1])
    if isinstance(value, dict) and "score" in value:
        score, details = value["score"], value.get("details")
    else:
        score, details = value, None
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        shown = repr(text[:SHOWN_CHARS]) + ("..." if len(text) > SHOWN_CHARS else "")
        raise RewardError(f"{where} printed {shown if text else 'nothing'}; expected {EXPECTED}")
    if not math.isfinite(score):
        raise RewardError(f"{where} printed score {score}; it must be a finite number")
    return float(score), details


def _json(text: str):
    try:
        return json.loads(text)  # accepts NaN and Infinity, so parse() can name them
    except ValueError:
        return None


def _shown(argv: list[str]) -> str:
    return "`" + shlex.join(argv) + "`"  # quoted for reading only: nothing runs it in a shell


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")
