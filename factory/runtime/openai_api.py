"""The OpenAI chat-completions protocol, as `factory serve` speaks it: the request a client may
send, the errors it gets back, and the answer's body and stream chunks.

It lives apart from the model and the server so the wire format can be read, tested and changed on
its own: which arguments are refused (as OpenAI refuses them) and how errors read, how a request's
messages become training-format turns, how FunctionGemma calls in an answer become `tool_calls`,
how a finished answer is cut into SSE chunks. None of that needs a model, torch, fastapi or a
socket; importing it needs nothing but pydantic. The dependency points one way: `serving` imports
this module, never the reverse.
"""
from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from factory import funcgemma
from factory.normalise import Invalid, normalise


# --- the request --------------------------------------------------------------------------------

class _Strict(BaseModel):
    # An argument this server would not honour is refused, as OpenAI refuses unknown arguments,
    # rather than silently changing what the client asked for.
    model_config = ConfigDict(extra="forbid")


class FunctionCall(_Strict):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCall(_Strict):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="allow")  # `strict` and whatever else a schema carries
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionSpec


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    # Free generation cannot be made to call (or not call) a tool, so only "auto" is honest.
    tool_choice: Literal["auto"] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: Literal[False] = False
    user: str | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported: one model answers one choice per request")
        return n

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop):
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return stop


class RequestError(Exception):
    """A request the server refuses, as OpenAI's error body and HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = (
            status, message, param, code, kind)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}


def validation_error(errors: list[dict]) -> RequestError:
    """The first pydantic error of a request body, OpenAI-style."""
    first = errors[0]
    param = ".".join(str(p) for p in first["loc"][1:]) or None  # drop the leading "body"
    if first["type"] == "extra_forbidden":
        return RequestError(400, f"unrecognized request argument supplied: {param}", param)
    if first["type"] == "json_invalid":
        return RequestError(400, f"the body is not valid JSON: {first['msg']}")
    said = first["msg"].removeprefix("Value error, ")  # pydantic's prefix for our own checks
    return RequestError(400, f"{param}: {said}" if param else said, param)


# --- the prompt ---------------------------------------------------------------------------------

def request_style(training_style: str) -> str:
    """How tool calls in a request's assistant turns are written for the model.

    The server hands FunctionGemma calls back as OpenAI tool_calls, so a client returns them as
    tool_calls; written back as FunctionGemma text they are what the model generated. Only a model
    trained on OpenAI-style calls (data.tool_calls "openai") sees them as the template renders them.
    """
    return "openai" if training_style == "openai" else "functiongemma"


def conversation(request: ChatRequest, style: str) -> tuple[list[dict], list[dict] | None]:
    """(messages, tools) in the training format; a message it cannot take is a 400."""
    turns = []
    for message in request.messages:
        turn = message.model_dump(exclude_none=True)
        if turn["role"] == "developer":  # OpenAI's newer name for the system turn
            turn["role"] = "system"
        turns.append(turn)
    try:
        example = normalise({"prompt": turns}, "prompt", style)
    except Invalid as exc:
        param = re.sub(r"^prompt\b", "messages", exc.field)
        raise RequestError(400, f"{param}: expected {exc.expected}, found {exc.found}",
                           param) from None
    tools = [t.model_dump(exclude_none=True) for t in request.tools] if request.tools else None
    return example["messages"], tools


# --- the response -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Generated:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish: Literal["stop", "length"]


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def split_calls(text: str) -> tuple[str, list[dict]]:
    """(free text, OpenAI tool_calls) of an answer; every call gets a fresh `call_...` id."""
    if not funcgemma.has_calls(text):
        return text, []
    try:
        content, calls = funcgemma.text_to_openai(text)
    except funcgemma.FunctionCallError:
        # A malformed or cut-off call is not a call: the client gets the model's words as written.
        return text, []
    return content, [{**call, "id": new_id("call_")} for call in calls]


def completion_body(generated: Generated, model_id: str, *, completion_id: str | None = None,
                    created: int | None = None) -> dict:
    """The chat.completion object for one generated answer."""
    content, tool_calls = split_calls(generated.text)
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": completion_id or new_id("chatcmpl-"), "object": "chat.completion",
            "created": int(time.time()) if created is None else created, "model": model_id,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if tool_calls else generated.finish}],
            "usage": {"prompt_tokens": generated.prompt_tokens,
                      "completion_tokens": generated.completion_tokens,
                      "total_tokens": generated.prompt_tokens + generated.completion_tokens}}


def stream_chunks(body: dict, include_usage: bool = False) -> Iterator[dict]:
    """A finished completion as chat.completion.chunk objects, in OpenAI's order."""
    choice = body["choices"][0]
    message = choice["message"]
    head = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"],
            "model": body["model"]}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                     "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    for piece in re.findall(r"\s*\S+\s*", message["content"] or ""):
        yield chunk({"content": piece})
    for index, call in enumerate(message.get("tool_calls", [])):
        yield chunk({"tool_calls": [{"index": index, **call}]})
    yield chunk({}, choice["finish_reason"])
    if include_usage:
        yield {**head, "choices": [], "usage": body["usage"]}


def _sse(chunks: Iterator[dict]) -> Iterator[str]:
    for chunk in chunks:
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"
