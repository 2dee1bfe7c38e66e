"""The data formats the format gate reads: one typed model per format, and how a file's format is found.

Each format is a pydantic TypedDict. Validation runs in pydantic's compiled core straight from the
JSON bytes of a record, which keeps a 200k-record file to seconds, and the JSON Schemas users read
in schemas/ are generated from these same models (`python -m factory.formats --write schemas`; a
test keeps them identical), so the schema a user checks against is the one the gate enforces.

Unknown top-level keys of a record are metadata and kept (trajectories carry `tiers`,
`structural`, `storyResult`); unknown keys inside a message are errors, since they are typos of
`content` or `role` far more often than data.
"""
from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import ConfigDict, Field, TypeAdapter
from typing_extensions import NotRequired, TypedDict

_RECORD = ConfigDict(extra="allow", allow_inf_nan=False)
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)

Role = Literal["system", "user", "assistant", "tool"]


class TextPart(TypedDict):
    __pydantic_config__ = _STRICT  # type: ignore[misc]
    type: Literal["text"]
    text: str


class ToolFunction(TypedDict):
    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]
    name: str
    arguments: NotRequired[Union[str, dict[str, Any]]]


class ToolCall(TypedDict):
    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]
    function: ToolFunction
    type: NotRequired[Literal["function"]]
    id: NotRequired[str]


class Message(TypedDict):
    __pydantic_config__ = _STRICT  # type: ignore[misc]
    role: Role
    content: NotRequired[Union[str, list[TextPart], None]]
    name: NotRequired[str]
    tool_calls: NotRequired[list[ToolCall]]
    tool_call_id: NotRequired[str]
    reasoning_content: NotRequired[str]
    weight: NotRequired[float]


Conversation = Annotated[list[Message], Field(min_length=1)]
# A prompt or a response may be a plain string or a list of messages, as in TRL's datasets.
Turns = Union[str, Conversation]
# The environment (task) a record belongs to: the verdict is also given per environment
# (factory.envs). Declared on every record, since every kind can give an eval example; a label
# only, it never changes a record's id or split.
Env = Annotated[Optional[Annotated[str, Field(min_length=1, max_length=200)]], Field(
    description="The environment (task) this record belongs to; evaluation reports every "
                "metric per environment. Absent or null: the implicit environment `default`.")]
Task = Annotated[Any, Field(description="Read as `env` when `env` is absent, if it is a string; "
                                        "anything else is kept as metadata.")]


class MessagesRecord(TypedDict):
    """OpenAI chat format: `messages` with role/content, tool_calls and the tool role."""
    __pydantic_config__ = _RECORD  # type: ignore[misc]
    messages: Conversation
    tools: NotRequired[list[dict[str, Any]]]
    reward: NotRequired[float]
    env: NotRequired[Env]
    task: NotRequired[Task]


class TrajectoryRecord(TypedDict):
    """An agent trajectory scored by its environment; `reward` feeds data.min_reward."""
    __pydantic_config__ = _RECORD  # type: ignore[misc]
    messages: Conversation
    reward: float
    tiers: NotRequired[dict[str, Any]]
    structural: NotRequired[dict[str, Any]]
    storyResult: NotRequired[dict[str, Any]]
    tools: NotRequired[list[dict[str, Any]]]
    env: NotRequired[Env]
    task: NotRequired[Task]


# `from` is a Python keyword, so this TypedDict is declared in the functional form.
ShareGPTTurn = TypedDict("ShareGPTTurn", {  # type: ignore[misc]
    "from": Literal["system", "human", "gpt", "function_call", "observation",
                    "user", "assistant", "tool"],
    "value": str,
    "weight": NotRequired[float],
})
ShareGPTTurn.__pydantic_config__ = _STRICT  # type: ignore[attr-defined]


class ShareGPTRecord(TypedDict):
    """ShareGPT: `conversations` of from/value turns; `tools` as a JSON string or a list."""
    __pydantic_config__ = _RECORD  # type: ignore[misc]
    conversations: Annotated[list[ShareGPTTurn], Field(min_length=1)]
    system: NotRequired[str]
    tools: NotRequired[Union[str, list[dict[str, Any]]]]
    env: NotRequired[Env]
    task: NotRequired[Task]


class AlpacaRecord(TypedDict):
    """Alpaca: instruction (+ input) → output, with an optional system prompt and history."""
    __pydantic_config__ = _RECORD  # type: ignore[misc]
    instruction: str
    input: NotRequired[str]
    output: str
    system: NotRequired[str]
    history: NotRequired[list[Annotated[list[str], Field(min_length=2, max_length=2)]]]
    env: NotRequired[Env]
    task: NotRequired[Task]


class DPORecord(TypedDict):
    """A preference pair. Without `prompt`, chosen and rejected are whole conversations that
    share the prompt as their common prefix."""
    __pydantic_config__ = _RECORD  # type: ignore[misc]
    prompt: NotRequired[Turns]
    chosen: Turns
    rejected: Turns
    env: NotRequired[Env]
    task: NotRequired[Task]


class KTORecord(TypedDict):
    """One completion labelled desirable (true) or undesirable (false)."""
    __pydantic_config__ = _RECORD  # type: ignore[misc]
    prompt: Turns
    completion: Turns
    label: bool
    env: NotRequired[Env]
    task: NotRequired[Task]


class GRPORecord(TypedDict):
    """A group of completions for one prompt, each with its reward."""
    __pydantic_config__ = _RECORD  # type: ignore[misc]
    prompt: Turns
    completions: Annotated[list[Turns], Field(min_length=2)]
    rewards: Annotated[list[float], Field(min_length=2)]
    env: NotRequired[Env]
    task: NotRequired[Task]


class PromptRecord(TypedDict):
    """A prompt alone, for online GRPO. Other keys (answer, tests, ...) reach reward functions."""
    __pydantic_config__ = _RECORD  # type: ignore[misc]
    prompt: Turns
    answer: NotRequired[str]
    env: NotRequired[Env]
    task: NotRequired[Task]


class TraceToolCall(TypedDict):
    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]
    tool_name: str
    arguments: NotRequired[Union[dict[str, Any], str]]
    result: NotRequired[Any]
    success: bool
    error: NotRequired[Union[str, None]]


class AgentTraceRecord(TypedDict):
    """One agent execution: the query, the tools it called (with success flags), its reasoning
    and its final response, with token counts and an optional label or reward."""
    __pydantic_config__ = _RECORD  # type: ignore[misc]
    user_query: str
    final_response: str
    tool_calls: NotRequired[list[TraceToolCall]]
    reasoning_steps: NotRequired[list[dict[str, Any]]]
    total_tokens_in: NotRequired[int]
    total_tokens_out: NotRequired[int]
    total_cost: NotRequired[float]
    label: NotRequired[Union[bool, None]]
    reward_score: NotRequired[Union[float, None]]
    system: NotRequired[str]
    env: NotRequired[Env]
    task: NotRequired[Task]


MODELS: dict[str, type] = {
    "messages": MessagesRecord,
    "trajectory": TrajectoryRecord,
    "sharegpt": ShareGPTRecord,
    "alpaca": AlpacaRecord,
    "dpo": DPORecord,
    "kto": KTORecord,
    "grpo": GRPORecord,
    "prompt": PromptRecord,
    "agent_trace": AgentTraceRecord,
}
FORMATS = tuple(MODELS)
FormatName = Literal["messages", "trajectory", "sharegpt", "alpaca", "dpo", "kto", "grpo",
                     "prompt", "agent_trace"]
_TRAJECTORY_KEYS = {"reward", "tiers", "structural", "storyResult"}


def detect(obj: object) -> str | None:
    """The format a record's keys say it is in, or None. Checked most specific first."""
    if not isinstance(obj, dict):
        return None
    keys = obj.keys()
    if "conversations" in keys:
        return "sharegpt"
    if "messages" in keys:
        return "trajectory" if "reward" in keys else "messages"
    if "chosen" in keys and "rejected" in keys:
        return "dpo"
    if "completions" in keys and "rewards" in keys:
        return "grpo"
    if "completion" in keys and "label" in keys:
        return "kto"
    if "user_query" in keys and "final_response" in keys:
        return "agent_trace"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "prompt" in keys:
        return "prompt"
    return None


DETECT_HINT = ("an object with `messages`, `conversations`, `instruction`/`output`, "
               "`chosen`/`rejected`, `completion`/`label`, `completions`/`rewards`, "
               "`user_query`/`final_response` or `prompt`")


@lru_cache(maxsize=None)
def adapter(fmt: str) -> TypeAdapter:
    return TypeAdapter(MODELS[fmt])


def json_schema(fmt: str) -> dict:
    model = MODELS[fmt]
    schema = adapter(fmt).json_schema()
    schema.pop("title", None)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://model-factory.dev/schemas/{schema_file(fmt)}",
            "title": f"model-factory record: {fmt}",
            "description": " ".join((model.__doc__ or "").split()), **schema}


def schema_file(fmt: str) -> str:
    return f"{fmt.replace('_', '-')}.schema.json"


def write_schemas(directory: Path) -> list[Path]:
    written = []
    for fmt in FORMATS:
        path = directory / schema_file(fmt)
        path.write_text(json.dumps(json_schema(fmt), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        for written_path in write_schemas(Path(sys.argv[2])):
            print(written_path)
    else:
        print("usage: python -m factory.formats --write schemas", file=sys.stderr)
        sys.exit(2)
