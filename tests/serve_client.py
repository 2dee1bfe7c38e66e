"""Start a real `factory serve`, talk to it over HTTP, stop it. Standard library only.

    with running(project=project) as server:               # --port 0: a free port
        body = ask(server.base_url, [{"role": "user", "content": "hi"}])
        body["choices"][0]["message"]                      # {"role", "content", "tool_calls"?}

The server prints `serving <model id> on http://127.0.0.1:<port>/v1` on stderr once it listens;
`start` waits for that line. It runs in its own process group, which `stop` ends with SIGTERM
(SIGKILL if it hangs), so no generation outlives a test.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

FACTORY = str(Path(sys.executable).with_name("factory"))
READY = re.compile(r"^serving (\S+) on (http://\S+/v1)$", re.MULTILINE)


@dataclass
class Server:
    proc: subprocess.Popen
    model_id: str
    base_url: str
    stdout: Path  # the command's result (--json: one JSON document) once it has stopped
    stderr: Path  # the ready line, uvicorn's log and any warning


def start(options: list[str] = (), *, project: Path | None = None, cwd: Path | None = None,
          timeout: float = 120, logs: Path | None = None) -> Server:
    """`factory [-C project] serve --port 0 --json <options>`, running and listening."""
    logs = Path(logs or tempfile.mkdtemp(prefix="factory-serve-"))
    out, err = logs / "serve.stdout", logs / "serve.stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        where = ["-C", str(project)] if project else []
        proc = subprocess.Popen([FACTORY, *where, "serve", "--port", "0", "--json", *options],
                                cwd=cwd, stdout=stdout, stderr=stderr, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = READY.search(err.read_text(errors="replace"))
        if found:
            return Server(proc, found.group(1), found.group(2), out, err)
        if proc.poll() is not None:
            raise AssertionError(f"factory serve exited with {proc.returncode} before listening:"
                                 f"\n{out.read_text()}\n{err.read_text()}")
        time.sleep(0.1)
    stop(Server(proc, "", "", out, err))
    raise AssertionError(f"factory serve did not listen within {timeout}s:\n{err.read_text()}")


def stop(server: Server, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Signal the server's process group; its exit status."""
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, sig)
        try:
            return server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
    return server.proc.wait()


@contextmanager
def running(options: list[str] = (), **where) -> Iterator[Server]:
    server = start(options, **where)
    try:
        yield server
    finally:
        stop(server)


def request(base_url: str, path: str, body: dict | None = None,
            timeout: float = 120) -> tuple[int, dict | str]:
    """(status, parsed JSON or raw text) of GET (no body) or POST (a JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base_url + path, data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, kind = resp.status, resp.read().decode(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        status, raw, kind = error.code, error.read().decode(), error.headers["Content-Type"]
    return status, json.loads(raw) if "json" in (kind or "") else raw


def ask(base_url: str, messages: list[dict], tools: list[dict] | None = None,
        **params) -> dict:
    """One chat completion (greedy unless params say otherwise); the response body."""
    body = {"messages": messages, **({"tools": tools} if tools else {}), **params}
    status, answer = request(base_url, "/chat/completions", body)
    assert status == 200, f"HTTP {status}: {answer}"
    return answer


def stream(base_url: str, messages: list[dict], tools: list[dict] | None = None,
           **params) -> list[dict]:
    """The chunks of a streamed completion, checked to end with `data: [DONE]`."""
    body = {"messages": messages, **({"tools": tools} if tools else {}), **params,
            "stream": True}
    status, raw = request(base_url, "/chat/completions", body)
    assert status == 200, f"HTTP {status}: {raw}"
    events = [line[len("data: "):] for line in raw.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events[-3:]
    return [json.loads(e) for e in events[:-1]]


def reassemble(chunks: list[dict]) -> dict:
    """The message and finish_reason the chunks of one choice add up to."""
    content, calls, finish = "", {}, None
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            for call in delta.get("tool_calls", []):
                calls.setdefault(call["index"], {k: v for k, v in call.items() if k != "index"})
            finish = choice["finish_reason"] or finish
    message = {"role": "assistant", "content": content or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"message": message, "finish_reason": finish}
