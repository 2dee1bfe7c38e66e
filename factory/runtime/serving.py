"""`factory serve`: one model behind an OpenAI-compatible chat endpoint, on this machine.

    GET  /health                status and the model id
    GET  /v1/models             the one model served
    POST /v1/chat/completions   OpenAI chat completions, streamed (SSE) or not

This module is the model side and the server: which model to serve and loading it, rendering a
prompt and generating its answer, the FastAPI app, and running it under uvicorn. What goes over the
wire (the request models, OpenAI's error body, the completion and its stream chunks) is
`runtime.openai_api`'s.

A request is rendered exactly as training rendered its rows: the messages go through
`normalise.normalise` (content parts joined, tool-call arguments parsed, tool calls written in the
style the model learned) and then the tokenizer's chat template with the declared `tools`.
Decoding is `runtime.scoring`'s: the same `generate` call for greedy requests, the same decode
and strip, so a served greedy answer equals the prediction evaluate scored. FunctionGemma calls in
the answer come back as OpenAI `tool_calls`; an answer is generated whole and then, for
`stream: true`, sent as chunks.

One model answers one request at a time: generation holds a lock in a worker thread, so the event
loop keeps answering /health and queues the rest. There is no authentication; it binds 127.0.0.1
unless told otherwise.

fastapi, uvicorn and torch are imported inside the functions that need them: the CLI imports this
module only for `serve`, and importing it (and `openai_api`) needs nothing but pydantic.
"""
from __future__ import annotations

import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from factory.errors import FactoryError
from factory.runtime.openai_api import (ChatRequest, Generated, RequestError, _sse,
                                        completion_body, conversation, request_style,
                                        stream_chunks, validation_error)

DEFAULT_MAX_NEW_TOKENS = 256
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# A generation that is running when the server is told to stop may finish within this time.
GRACEFUL_SHUTDOWN_S = 10


# --- the prompt ---------------------------------------------------------------------------------

def render(tokenizer, messages: list[dict], tools: list[dict] | None) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                             add_generation_prompt=True)
    except Exception as exc:  # a template raises whatever Jinja raises; the client sent it
        raise RequestError(400, f"the chat template cannot render these messages: "
                                f"{type(exc).__name__}: {exc}", "messages") from None


# --- generation ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy, as evaluate decodes
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()


def sampling_of(request: ChatRequest, cap: int) -> Sampling:
    """Generation settings; a budget above the server's cap is lowered to it ("length" says so)."""
    wanted = request.max_completion_tokens or request.max_tokens or cap
    stop = [request.stop] if isinstance(request.stop, str) else request.stop or []
    return Sampling(min(wanted, cap), request.temperature or 0.0, request.top_p, request.seed,
                    tuple(stop))


def generate(model, tokenizer, prompt: str, sampling: Sampling,
             context: int | None = None) -> Generated:
    import torch

    batch = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    prompt_tokens = batch["input_ids"].shape[1]
    budget = sampling.max_new_tokens
    if context is not None:
        if prompt_tokens >= context:
            raise RequestError(400, f"the prompt has {prompt_tokens} tokens; the model's context "
                                    f"holds {context}", "messages", "context_length_exceeded")
        budget = min(budget, context - prompt_tokens)
    options: dict[str, Any] = {"max_new_tokens": budget, "do_sample": False,
                               "pad_token_id": tokenizer.pad_token_id}
    if sampling.temperature > 0:
        options.update(do_sample=True, temperature=sampling.temperature,
                       top_p=sampling.top_p or 1.0)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)  # global RNG: safe, the caller holds the lock
    if sampling.stop:
        options.update(stop_strings=list(sampling.stop), tokenizer=tokenizer)
    batch = {k: v.to(model.device) for k, v in batch.items()}
    with torch.no_grad():
        out = model.generate(**batch, **options)
    new = out[0, prompt_tokens:].tolist()
    text = tokenizer.decode(new, skip_special_tokens=True).strip()
    text, stopped = _cut_at_stop(text, sampling.stop)
    ended = bool(new) and new[-1] in _eos_ids(model, tokenizer)
    finish = "length" if len(new) >= budget and not (ended or stopped) else "stop"
    return Generated(text, prompt_tokens, len(new), finish)


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    # OpenAI leaves the stop sequence out of the answer; generate() keeps it.
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[:min(found)].strip(), True) if found else (text, False)


def _eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def context_length(model) -> int | None:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
        else model.config
    return getattr(config, "max_position_embeddings", None)


# --- the app ------------------------------------------------------------------------------------

def build_app(model, tokenizer, model_id: str, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
              tool_style: str = "keep"):
    """The FastAPI app serving `model`; `tool_style` is the data.tool_calls it was trained with."""
    from fastapi import FastAPI

    app = FastAPI(title=f"model-factory: {model_id}", docs_url=None, redoc_url=None)
    _error_handlers(app)
    lock = threading.Lock()
    created = int(time.time())
    context = context_length(model)
    style = request_style(tool_style)

    def answer(request: ChatRequest) -> Generated:
        messages, tools = conversation(request, style)
        with lock:  # one model, one request at a time; the tokenizer's too
            prompt = render(tokenizer, messages, tools)
            return generate(model, tokenizer, prompt, sampling_of(request, max_new_tokens),
                            context)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_id}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": model_id, "object": "model",
                                            "created": created, "owned_by": "model-factory"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest):
        from fastapi.responses import StreamingResponse
        from starlette.concurrency import run_in_threadpool

        if request.model not in (None, model_id):
            raise RequestError(404, f"the model {request.model!r} is not served here; this "
                                    f"server serves {model_id!r}", "model", "model_not_found")
        body = completion_body(await run_in_threadpool(answer, request), model_id)
        if not request.stream:
            return body
        usage = bool(request.stream_options and request.stream_options.include_usage)
        return StreamingResponse(_sse(stream_chunks(body, usage)),
                                 media_type="text/event-stream")

    return app


def _error_handlers(app) -> None:
    """Every error leaves as OpenAI's {"error": {...}} body."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def reply(error: RequestError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(RequestError)
    async def refused(_, exc: RequestError):
        return reply(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_, exc: RequestValidationError):
        return reply(validation_error(list(exc.errors())))

    @app.exception_handler(HTTPException)
    async def http(request, exc: HTTPException):
        return reply(RequestError(exc.status_code, f"{exc.detail}: {request.method} "
                                                   f"{request.url.path}"))

    @app.exception_handler(Exception)
    async def crashed(_, exc: Exception):
        # Starlette re-raises after this reply, so uvicorn still logs the traceback.
        return reply(RequestError(500, f"{type(exc).__name__}: {exc}", kind="server_error"))


# --- what to serve ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    model_id: str
    weights: Path        # a full model folder (merged/) or a PEFT adapter applied to `base`
    base: dict           # the model section runtime.models.load reads
    root: Path           # what a relative base source is relative to
    tool_style: str      # data.tool_calls the model was trained with

    def to_dict(self) -> dict:
        return {"model": self.model_id, "weights": str(self.weights),
                "adapter": (self.weights / "adapter_config.json").exists()}


def resolve(project_dir: str | Path, *, model: str | None = None,
            promotion: str | None = None) -> Target:
    """The promotion to serve (default: the current one), or the model folder --model names.

    A relative --model is resolved inside the project; an absolute one is used as given and
    needs no project unless it is an adapter (whose base model the project names).
    """
    from factory.project import Project

    if model and promotion:
        raise FactoryError("E_USAGE", "pass --model or --promotion, not both")
    if model and Path(model).is_absolute():
        project = _project_or_none(project_dir)
        return _folder_target(project, Path(model).resolve())
    project = Project.open(project_dir)
    if model:
        return _folder_target(project, project.inside(model))
    return _promotion_target(project, promotion)


def _project_or_none(project_dir: str | Path):
    from factory.project import Project

    try:
        return Project.open(project_dir)
    except FactoryError as error:
        if error.code != "E_NOT_A_PROJECT":
            raise
        return None  # an absolute --model stands on its own


def _promotion_target(project, promotion: str | None) -> Target:
    from factory import registry

    book = registry.read(project)
    chosen = promotion or book["current"]
    if chosen is None:
        raise FactoryError("E_SERVE", f"nothing is promoted in {project.root}",
                           hint="Deploy a model first (`factory run deploy`), or serve a model "
                                "folder with `factory serve --model <dir>`.")
    registry.require_on_disk(project, book, chosen)
    where = project.deployed_dir / chosen
    for output, marker in (("merged", "config.json"), ("adapter", "adapter_config.json")):
        if (where / output / marker).exists():
            return _target(project, chosen, where / output)
    raise FactoryError("E_SERVE", f"{project.rel(where)} holds neither merged/ nor adapter/",
                       details={"promotion": chosen})


def _folder_target(project, folder: Path) -> Target:
    adapter = (folder / "adapter_config.json").exists()
    if not adapter and not (folder / "config.json").exists():
        raise FactoryError("E_SERVE", f"{folder} is neither a model folder (config.json) nor a "
                                      "PEFT adapter (adapter_config.json)",
                           details={"model": str(folder)})
    if adapter and project is None:
        raise FactoryError("E_SERVE", f"{folder} is an adapter; its base model is named by the "
                                      "project it was trained in",
                           hint="Run `factory -C <project> serve --model <adapter dir>`.")
    return _target(project, folder.name, folder)


def _target(project, model_id: str, weights: Path) -> Target:
    if project is None:
        base = {"source": str(weights), "local": False, "revision": None, "dtype": "auto",
                "trust_remote_code": False}
        return Target(model_id, weights, base, weights, "keep")
    from factory.config import load_config
    from factory.project import local_model_dir

    config = load_config(project.config_file)
    m = config.model
    local = local_model_dir(project, m.name)
    # The same model section agents.base_model.script_view gives every gate's script.
    base = {"source": project.rel(local) if local else m.name, "local": local is not None,
            "revision": m.revision, "dtype": m.dtype, "max_length": m.max_length,
            "trust_remote_code": m.trust_remote_code}
    return Target(model_id, weights, base, project.root, config.data.tool_calls)


def load(target: Target):
    """(model, tokenizer): merged weights as they are, or the base model with the adapter."""
    from factory.runtime import models
    from factory.runtime.report import ScriptError

    try:
        return models.load(target.base, target.root, adapter=str(target.weights))
    except ScriptError as error:
        raise FactoryError(error.code, error.message, hint=error.hint,
                           details=error.details) from None


# --- running ------------------------------------------------------------------------------------

def exposure_warning(host: str) -> str | None:
    if host in LOOPBACK:
        return None
    return (f"binding {host}: anyone who can reach this address can use the model; the server "
            "has no authentication")


def bind(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) socket; port 0 takes a free one."""
    sock = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:  # socket.gaierror included
        if sock is not None:
            sock.close()
        raise FactoryError("E_SERVE", f"cannot listen on {host}:{port}: {exc}",
                           details={"host": host, "port": port}) from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def serve(target: Target, host: str = "127.0.0.1", port: int = 8000, *,
          max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, say: Callable[[str], None] = _stderr,
          log_level: str = "info") -> dict:
    """Load the model, listen, print `serving <id> on <url>` once listening, run until
    SIGINT/SIGTERM. Returns what was served and which signal stopped it."""
    _require("fastapi", "uvicorn", "torch", "transformers")
    warning = exposure_warning(host)
    if warning:
        say(f"warning: {warning}")
    sock = bind(host, port)  # before the slow load: a taken port fails at once
    url = url_of(sock)
    try:
        model, tokenizer = load(target)
        app = build_app(model, tokenizer, target.model_id, tool_style=target.tool_style,
                        max_new_tokens=max_new_tokens)
        stopped_by = run_app(app, sock, lambda: say(f"serving {target.model_id} on {url}"),
                          log_level)
    finally:
        sock.close()
    return {**target.to_dict(), "url": url, "stopped_by": stopped_by,
            "warnings": [warning] if warning else []}


def _require(*packages: str) -> None:
    from importlib.util import find_spec

    missing = [p for p in packages if find_spec(p) is None]
    if missing:
        raise FactoryError("E_DEPENDENCY", f"factory serve needs {', '.join(missing)}: "
                                           "pip install 'model-factory[train]'",
                           details={"missing": missing})


def run_app(app, sock: socket.socket, on_ready: Callable[[], None], log_level: str) -> str | None:
    import asyncio
    import signal

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="off",
                                           log_config=_log_config(),
                                           timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
    caught: list[int] = []
    # uvicorn re-raises the signal that stopped it to the handler it found; this one records it,
    # so a requested stop returns normally instead of dying by the signal.
    previous = {sig: signal.signal(sig, lambda number, _frame: caught.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(_serve_announced(server, sock, on_ready, caught))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return signal.Signals(caught[0]).name if caught else None


def _log_config() -> dict:
    import copy

    from uvicorn.config import LOGGING_CONFIG

    # uvicorn logs requests to stdout; stdout is the command's result (one JSON document).
    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return config


async def _serve_announced(server, sock, on_ready, caught: list[int]) -> None:
    import asyncio

    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if server.started:
        if caught:  # a stop asked for before uvicorn took the signals over
            server.should_exit = True
        on_ready()
    await task
