"""One internal shape for every format: an *example*.

Every validated record becomes a dict with a `kind` that says what it can teach:

    chat        messages (a whole conversation ending with the assistant), maybe reward/label
    preference  messages (the prompt), chosen and rejected (assistant turns)
    binary      messages (the prompt), completion (assistant turns) and label
    group       messages (the prompt), completions and their rewards
    prompt      messages (the prompt) alone, maybe a reference answer, for online GRPO

plus `tools` (tool schemas), `meta` (every other key of the record, kept), `format`, and `env`
when the record names its environment (factory.envs; it stays in `meta` too).
Messages always have role and content (a string), in that key order; assistant tool calls are
OpenAI-style with `arguments` as an object, which is what chat templates render.

Problems that a schema cannot express (a conversation without an assistant turn, a malformed
FunctionGemma call, rewards that do not match completions) raise Invalid with the field path.
"""
from __future__ import annotations

import hashlib
import json
import unicodedata

from factory import envs, funcgemma

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "tool",
                  "tool": "tool"}
TOOL_STYLES = ("keep", "openai", "functiongemma")
_CALL_MARK = funcgemma.START["call"]


class Invalid(Exception):
    def __init__(self, field: str, expected: str, found: str):
        super().__init__(f"{field}: expected {expected}, found {found}")
        self.field, self.expected, self.found = field, expected, found


def normalise(record: dict, fmt: str, tool_style: str = "keep") -> dict:
    example = _BUILDERS[fmt](record)
    example["format"] = fmt
    env = envs.of_record(record)
    if env is not None:  # set only when named, so unlabelled examples stay exactly as they were
        example["env"] = env
    if example["kind"] == "chat" and tool_style == "keep":  # the common case, kept cheap
        _check_calls(example["messages"], "messages")
        return example
    for field, turns in _turn_lists(example):
        _check_calls(turns, field)
        if tool_style != "keep":
            _restyle(turns, tool_style, field)
    return example


# --- one builder per format ---------------------------------------------------------------------

_MESSAGES_FIELDS = frozenset(("messages", "tools", "reward"))


def _from_messages(record: dict) -> dict:
    messages = _messages(record["messages"], "messages")
    _require_answer(messages, "messages")
    example = {"kind": "chat", "messages": messages,
               "meta": {k: v for k, v in record.items() if k not in _MESSAGES_FIELDS}}
    if record.get("tools"):
        example["tools"] = record["tools"]
    if record.get("reward") is not None:
        example["reward"] = record["reward"]
    return example


def _from_sharegpt(record: dict) -> dict:
    messages = []
    if record.get("system"):
        messages.append({"role": "system", "content": record["system"]})
    for index, turn in enumerate(record["conversations"]):
        field = f"conversations.{index}"
        role = SHAREGPT_ROLES[turn["from"]]
        if turn["from"] == "function_call":
            messages.append({"role": "assistant", "content": "",
                             "tool_calls": _sharegpt_calls(turn["value"], f"{field}.value")})
        else:
            messages.append({"role": role, "content": content_text(turn["value"])})
        if "weight" in turn:
            messages[-1]["weight"] = turn["weight"]
    _require_answer(messages, "conversations")
    example = {"kind": "chat", "messages": messages,
               "meta": _meta(record, "conversations", "system", "tools")}
    _maybe(example, "tools", _tools(record.get("tools"), "tools"))
    return example


def _from_alpaca(record: dict) -> dict:
    messages = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    for question, answer in record.get("history", []):
        messages += [{"role": "user", "content": question},
                     {"role": "assistant", "content": answer}]
    prompt = record["instruction"]
    if record.get("input"):
        prompt = f"{prompt}\n{record['input']}" if prompt else record["input"]
    if not prompt.strip():
        raise Invalid("instruction", "a non-empty instruction or input", "empty strings")
    messages += [{"role": "user", "content": prompt},
                 {"role": "assistant", "content": record["output"]}]
    return {"kind": "chat", "messages": messages,
            "meta": _meta(record, "instruction", "input", "output", "system", "history")}


def _from_dpo(record: dict) -> dict:
    if "prompt" in record:
        prompt = _prompt(record["prompt"], "prompt")
        chosen = _response(record["chosen"], "chosen")
        rejected = _response(record["rejected"], "rejected")
    else:
        prompt, chosen, rejected = _split_implicit(record["chosen"], record["rejected"])
    if chosen == rejected:
        raise Invalid("rejected", "a response different from chosen", "the same text")
    return {"kind": "preference", "messages": prompt, "chosen": chosen, "rejected": rejected,
            "meta": _meta(record, "prompt", "chosen", "rejected")}


def _from_kto(record: dict) -> dict:
    return {"kind": "binary", "messages": _prompt(record["prompt"], "prompt"),
            "completion": _response(record["completion"], "completion"),
            "label": record["label"], "meta": _meta(record, "prompt", "completion", "label")}


def _from_grpo(record: dict) -> dict:
    completions, rewards = record["completions"], record["rewards"]
    if len(rewards) != len(completions):
        raise Invalid("rewards", f"{len(completions)} rewards, one per completion",
                      f"{len(rewards)}")
    return {"kind": "group", "messages": _prompt(record["prompt"], "prompt"),
            "completions": [_response(c, f"completions.{i}") for i, c in enumerate(completions)],
            "rewards": [float(r) for r in rewards],
            "meta": _meta(record, "prompt", "completions", "rewards")}


def _from_prompt(record: dict) -> dict:
    example = {"kind": "prompt", "messages": _prompt(record["prompt"], "prompt"),
               "meta": _meta(record, "prompt", "answer")}
    _maybe(example, "answer", record.get("answer"))
    return example


def _from_agent_trace(record: dict) -> dict:
    messages = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    messages.append({"role": "user", "content": record["user_query"]})
    for index, call in enumerate(record.get("tool_calls", [])):
        arguments = _arguments(call.get("arguments", {}), f"tool_calls.{index}.arguments")
        messages.append({"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "id": f"call_{index}",
             "function": {"name": call["tool_name"], "arguments": arguments}}]})
        messages.append({"role": "tool", "content": _tool_result(call),
                         "tool_call_id": f"call_{index}"})
    messages.append({"role": "assistant", "content": record["final_response"]})
    calls = record.get("tool_calls", [])
    meta = _meta(record, "user_query", "final_response", "tool_calls", "system", "label",
                 "reward_score")
    meta["tool_success_rate"] = (sum(c["success"] for c in calls) / len(calls)) if calls else None
    example = {"kind": "chat", "messages": messages, "meta": meta}
    _maybe(example, "label", record.get("label"))
    _maybe(example, "reward", record.get("reward_score"))
    return example


_BUILDERS = {"messages": _from_messages, "trajectory": _from_messages,
             "sharegpt": _from_sharegpt, "alpaca": _from_alpaca, "dpo": _from_dpo,
             "kto": _from_kto, "grpo": _from_grpo, "prompt": _from_prompt,
             "agent_trace": _from_agent_trace}


# --- pieces shared by the builders --------------------------------------------------------------

def _messages(raw: list[dict], field: str) -> list[dict]:
    messages = []
    for index, message in enumerate(raw):
        if len(message) == 2 and type(message.get("content")) is str:
            messages.append(message)  # already clean: role and text content, a fresh dict
            continue
        clean = {"role": message["role"], "content": content_text(message.get("content"))}
        for key in ("name", "tool_call_id", "reasoning_content", "weight"):
            if message.get(key) is not None:
                clean[key] = message[key]
        if message.get("tool_calls"):
            clean["tool_calls"] = [_tool_call(call, f"{field}.{index}.tool_calls.{n}")
                                   for n, call in enumerate(message["tool_calls"])]
        messages.append(clean)
    return messages


def content_text(content) -> str:
    """A message's content as one string: text parts joined, None as empty."""
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(part["text"] for part in content)
    return content


def _tool_call(call: dict, field: str) -> dict:
    function = call["function"]
    clean = {"type": "function",
             "function": {"name": function["name"],
                          "arguments": _arguments(function.get("arguments", {}),
                                                  f"{field}.function.arguments")}}
    if call.get("id"):
        clean["id"] = call["id"]
    return clean


def _arguments(arguments, field: str) -> dict:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError as exc:
        raise Invalid(field, "a JSON object of arguments", f"invalid JSON ({exc.msg})") from None
    if not isinstance(parsed, dict):
        raise Invalid(field, "a JSON object of arguments", type(parsed).__name__)
    return parsed


def _sharegpt_calls(value: str, field: str) -> list[dict]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise Invalid(field, 'a JSON function call {"name", "arguments"}',
                      f"invalid JSON ({exc.msg})") from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    out = []
    for n, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise Invalid(field, 'a JSON function call {"name", "arguments"}',
                          type(call).__name__ if not isinstance(call, dict) else "no name")
        out.append({"type": "function", "id": f"call_{n}",
                    "function": {"name": call["name"],
                                 "arguments": _arguments(call.get("arguments", {}), field)}})
    return out


def _tools(tools, field: str) -> list[dict] | None:
    if tools is None or isinstance(tools, list):
        return tools or None
    try:
        parsed = json.loads(tools) if tools.strip() else []
    except json.JSONDecodeError as exc:
        raise Invalid(field, "a JSON list of tool schemas", f"invalid JSON ({exc.msg})") from None
    if not isinstance(parsed, list) or not all(isinstance(t, dict) for t in parsed):
        raise Invalid(field, "a JSON list of tool schemas", type(parsed).__name__)
    return parsed or None


def _tool_result(call: dict) -> str:
    if not call["success"]:
        return f"error: {call.get('error') or 'the call failed'}"
    result = call.get("result")
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


def _prompt(turns, field: str) -> list[dict]:
    if isinstance(turns, str):
        return [{"role": "user", "content": turns}]
    messages = _messages(turns, field)
    if messages[-1]["role"] == "assistant":
        raise Invalid(f"{field}.{len(messages) - 1}.role",
                      "the prompt to end with a user, system or tool turn", "'assistant'")
    return messages


def _response(turns, field: str) -> list[dict]:
    if isinstance(turns, str):
        return [{"role": "assistant", "content": turns}]
    messages = _messages(turns, field)
    if messages[0]["role"] != "assistant":
        raise Invalid(f"{field}.0.role", "the response to start with an assistant turn",
                      repr(messages[0]["role"]))
    return messages


def _split_implicit(chosen, rejected) -> tuple[list[dict], list[dict], list[dict]]:
    if isinstance(chosen, str) or isinstance(rejected, str):
        raise Invalid("prompt", "a prompt, or chosen and rejected as whole conversations",
                      "no prompt and a plain-string response")
    chosen, rejected = _messages(chosen, "chosen"), _messages(rejected, "rejected")
    shared = 0
    while (shared < min(len(chosen), len(rejected)) - 1
           and chosen[shared] == rejected[shared]):
        shared += 1
    prompt = chosen[:shared]
    if not prompt or prompt[-1]["role"] == "assistant":
        raise Invalid("chosen", "conversations that share a prompt ending in a user turn",
                      f"{shared} shared turn(s)")
    return prompt, _response(chosen[shared:], "chosen"), _response(rejected[shared:], "rejected")


def _require_answer(messages: list[dict], field: str) -> None:
    for message in messages:
        if message["role"] == "user":
            break
    else:
        raise Invalid(field, "at least one user turn",
                      "roles " + ", ".join(m["role"] for m in messages))
    if messages[-1]["role"] != "assistant":
        raise Invalid(f"{field}.{len(messages) - 1}", "the conversation to end with an "
                      "assistant turn", repr(messages[-1]["role"]))


def _meta(record: dict, *taken: str) -> dict:
    return {k: v for k, v in record.items() if k not in taken}


def _maybe(example: dict, key: str, value) -> None:
    if value is not None:
        example[key] = value


# --- tool calls inside text ---------------------------------------------------------------------

def _turn_lists(example: dict):
    yield "messages", example["messages"]
    for key in ("chosen", "rejected", "completion"):
        if key in example:
            yield key, example[key]
    for index, turns in enumerate(example.get("completions", ())):
        yield f"completions.{index}", turns


def _check_calls(turns: list[dict], field: str) -> None:
    for index, message in enumerate(turns):
        # Only assistant turns: a user may quote the syntax, and that is not a call.
        if message["role"] == "assistant" and _CALL_MARK in message["content"]:
            try:
                funcgemma.check(message["content"])
            except funcgemma.FunctionCallError as exc:
                raise Invalid(f"{field}.{index}.content", "well-formed FunctionGemma calls",
                              f"{exc.reason} at offset {exc.offset}") from None


def _restyle(turns: list[dict], style: str, field: str) -> None:
    """Write every assistant tool call in one style, so the model learns one way to call."""
    for index, message in enumerate(turns):
        if message["role"] != "assistant":
            continue
        try:
            _restyle_message(message, style)
        except funcgemma.FunctionCallError as exc:
            raise Invalid(f"{field}.{index}", f"tool calls that can be written as {style}",
                          exc.reason) from None


def _restyle_message(message: dict, style: str) -> None:
    if style == "openai" and funcgemma.has_calls(message["content"]):
        text, calls = funcgemma.text_to_openai(message["content"])
        message["content"] = text
        message["tool_calls"] = message.get("tool_calls", []) + [
            {**c, "function": {**c["function"],
                               "arguments": json.loads(c["function"]["arguments"])}}
            for c in calls]
    elif style == "functiongemma" and message.get("tool_calls"):
        message["content"] = funcgemma.openai_to_text(message["content"],
                                                      message.pop("tool_calls"))


# --- identity -----------------------------------------------------------------------------------
# Both hashes are fed message by message rather than through canonical JSON: the reader computes
# them for every record, and this is most of the format gate's cost per record.

_EXTRA_KEYS = ("name", "tool_calls", "tool_call_id", "reasoning_content", "weight")
_SECTIONS = ("chosen", "rejected", "completion")
_VALUES = ("label", "rewards", "answer", "tools")


def identify(example: dict) -> tuple[str, str]:
    """(content id, prompt key) of an example.

    The id is for exact dedup: whitespace at the ends, line endings and Unicode composition do
    not make two records different; metadata, source and environment never count (labelling
    data with `env` must not move it between splits). The prompt key hashes what
    the model is asked; splits are drawn by it, so one question never sits in both train and
    eval, however many answers it has.
    """
    messages, kind = example["messages"], example["kind"]
    asked = len(prompt_of(example))
    prompt = "".join([_piece(m) for m in messages[:asked]])
    rest = [f"\x00kind:{kind}"] + [_piece(m) for m in messages[asked:]]
    if kind != "chat":
        for section in _SECTIONS:
            if section in example:
                rest.append(f"\x00{section}")
                rest += [_piece(m) for m in example[section]]
        for index, turns in enumerate(example.get("completions", ())):
            rest.append(f"\x00completion {index}")
            rest += [_piece(m) for m in turns]
    values = {k: example[k] for k in _VALUES if k in example}
    if values:
        rest.append(_json(values))
    content = prompt + "".join(rest)
    return (hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()[:16],
            hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:16])


def example_id(example: dict) -> str:
    return identify(example)[0]


def prompt_key(example: dict) -> str:
    return identify(example)[1]


def conversation_key(messages: list[dict]) -> str:
    """The prompt key of any message list that holds a user turn: a conversation, or the prompt
    of a method row. It equals the key `identify` gave the example the list came from, so
    leakage can be checked from content alone, whatever ids a file claims."""
    return identify({"messages": messages, "kind": "chat"})[1]


def prompt_of(example: dict) -> list[dict]:
    messages = example["messages"]
    if example["kind"] != "chat":
        return messages
    last_user = len(messages) - 1
    while messages[last_user]["role"] != "user":
        last_user -= 1
    return messages[: last_user + 1]


def _piece(message: dict) -> str:
    text = message["content"].strip()
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    piece = f"\x1e{message['role']}\x1f{text}"
    if len(message) > 2:
        extras = {k: message[k] for k in _EXTRA_KEYS if k in message}
        if extras:
            piece += "\x1f" + _json(extras)
    return piece


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
