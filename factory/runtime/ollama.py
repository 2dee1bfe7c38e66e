"""An Ollama Modelfile whose TEMPLATE renders exactly what the training chat template renders.

Ollama guesses a template when none is given, and a fine-tuned model answers garbage or never
stops under the guess (ollama#6823, ollama#8363). Translating arbitrary Jinja to Go templates is
not possible, so the template is *measured* instead: each role's text before and after its
content is found by rendering conversations with marker contents, the Go template is built from
those pieces, and the pieces are checked to reproduce the Jinja rendering of several
conversations exactly. A template they cannot reproduce is refused with a hint, never guessed.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from factory.runtime.report import ScriptError

ROLES = ("system", "user", "assistant", "tool")
HINT = ("Give the Go template yourself in deploy.ollama.template, or drop ollama from "
        "deploy.outputs.")


@dataclass
class Wrappers:
    """Text around each role's content, text before the first message, and the reply prompt."""
    around: dict[str, tuple[str, str]]
    preamble: str = ""
    generation: str = ""
    stops: list[str] = field(default_factory=list)


def _mark(role: str, n: int) -> str:
    return f"\u2063{role.upper()}{n}\u2063"  # invisible separators: never in a real template


def _render(tokenizer, messages: list[dict], generation: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=generation)


def measure(tokenizer) -> Wrappers:
    """Find each role's wrapper by rendering conversations one message longer at a time."""
    user_first = [{"role": r, "content": _mark(r, i)} for i, r in
                  enumerate(["user", "assistant", "user", "assistant"])]
    around, firsts = {}, {}
    for conversation in _probe_conversations(tokenizer, user_first):
        for k, message in enumerate(conversation):
            before, _, after = _block(tokenizer, conversation, k).partition(message["content"])
            if k == 0:
                firsts[message["role"]] = (before, after)
            else:
                around.setdefault(message["role"], (before, after))
    preamble = _preamble(firsts["user"][0], around["user"][0])
    if "system" in firsts:
        before, after = firsts["system"]
        if not before.startswith(preamble):
            raise ScriptError("E_EXPORT", "the chat template opens a conversation with a system "
                                          "message unlike one without", hint=HINT)
        around["system"] = (before[len(preamble):], after)
    base = user_first[:3]
    generation = _render(tokenizer, base, True)[len(_render(tokenizer, base, False)):]
    return Wrappers(around=around, preamble=preamble, generation=generation,
                    stops=_stops(tokenizer, around))


def _probe_conversations(tokenizer, user_first: list[dict]) -> list[list[dict]]:
    conversations = [user_first]
    for role in ("system", "tool"):
        lead = [{"role": role, "content": _mark(role, 9)}] if role == "system" else []
        tail = [{"role": "tool", "content": _mark(role, 9)}] if role == "tool" else []
        candidate = lead + user_first[:2] + tail
        try:
            _render(tokenizer, candidate, False)
        except Exception:  # noqa: BLE001 - a template may refuse a role; then it is not offered
            continue
        conversations.append(candidate)
    return conversations


def _block(tokenizer, conversation: list[dict], k: int) -> str:
    before = _render(tokenizer, conversation[:k], False) if k else ""
    upto = _render(tokenizer, conversation[:k + 1], False)
    if not upto.startswith(before) or conversation[k]["content"] not in upto[len(before):]:
        raise ScriptError("E_EXPORT", "the chat template does not render a conversation one "
                                      "message after another, so no Ollama TEMPLATE can be "
                                      "measured from it", hint=HINT)
    return upto[len(before):]


def _preamble(first_user: str, user_before: str) -> str:
    if not first_user.endswith(user_before):
        raise ScriptError("E_EXPORT", "the chat template renders the first user message unlike "
                                      "later ones", hint=HINT)
    return first_user[:len(first_user) - len(user_before)]


def _stops(tokenizer, around: dict[str, tuple[str, str]]) -> list[str]:
    candidates = [around["assistant"][1].strip(), around["user"][0].strip(),
                  tokenizer.eos_token or ""]
    return list(dict.fromkeys(c for c in candidates if c))


def without_bos(wrappers: Wrappers, bos: str | None) -> Wrappers:
    """The pieces for a runtime that adds BOS itself: a second BOS would double it.

    A doubled BOS is one of the ways a GGUF lost its fine-tune in llama.cpp#7062.
    """
    if bos and wrappers.preamble.startswith(bos):
        return Wrappers(around=wrappers.around, preamble=wrappers.preamble[len(bos):],
                        generation=wrappers.generation, stops=wrappers.stops)
    return wrappers


def render(wrappers: Wrappers, messages: list[dict], generation: bool) -> str:
    """What the Go template below renders, in Python: used to prove the pieces are right."""
    parts = [wrappers.preamble]
    for message in messages:
        before, after = wrappers.around[message["role"]]
        parts += [before, message["content"], after]
    if generation:
        parts.append(wrappers.generation)
    return "".join(parts)


def verify(tokenizer, wrappers: Wrappers) -> int:
    """Compare Jinja and the measured pieces on several conversations; return how many."""
    turns = [("user", "Hi there."), ("assistant", "Hello! How can I help?"),
             ("user", "Call the tool.\nTwice."), ("assistant", "Done.")]
    conversations = [[{"role": r, "content": c} for r, c in turns[:n]] for n in (1, 2, 3, 4)]
    if "system" in wrappers.around:
        conversations += [[{"role": "system", "content": "Be brief."}] + c for c in conversations]
    checked = 0
    for conversation in conversations:
        generation = conversation[-1]["role"] != "assistant"
        expected = _render(tokenizer, conversation, generation)
        if render(wrappers, conversation, generation) != expected:
            raise ScriptError("E_EXPORT", "the measured Ollama template does not reproduce the "
                                          f"chat template on {json.dumps(conversation)}",
                              hint=HINT, expected=expected)
        checked += 1
    return checked


def _literal(text: str) -> str:
    # Plain text reads best; text that looks like a template action is quoted instead.
    return json.dumps(text, ensure_ascii=False).join(("{{ ", " }}")) if (
        "{{" in text or "}}" in text) else text


def go_template(wrappers: Wrappers) -> str:
    """The TEMPLATE for Ollama's Go text/template engine, over .Messages."""
    branches = []
    for role in ROLES:
        if role in wrappers.around:
            before, after = wrappers.around[role]
            keyword = "if" if not branches else "else if"
            branches.append(f'{{{{ {keyword} eq .Role "{role}" }}}}{_literal(before)}'
                            f"{{{{ .Content }}}}{_literal(after)}")
    return ('{{ $role := "" }}' + _literal(wrappers.preamble)
            + "{{ range .Messages }}{{ $role = .Role }}" + "".join(branches) + "{{ end }}{{ end }}"
            + '{{ if ne $role "assistant" }}' + _literal(wrappers.generation) + "{{ end }}")


def modelfile(gguf_from: str, template: str, stops: list[str], system: str | None,
              parameters: dict) -> str:
    lines = ["# Written by model-factory. Build with: ollama create <name> -f Modelfile",
             f"FROM {gguf_from}", f'TEMPLATE """{template}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    for key, value in parameters.items():
        lines.append(f"PARAMETER {key} {value}")
    lines += [f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}" for stop in stops]
    return "\n".join(lines) + "\n"


def check_literal(value: str, what: str) -> None:
    if '"""' in value:
        raise ScriptError("E_EXPORT", f"{what} contains \"\"\", which ends a Modelfile block",
                          hint=HINT)


def create(name: str, modelfile_path: Path) -> dict:
    """Run `ollama create` when an ollama binary is on PATH; say so either way."""
    command = ["ollama", "create", name, "-f", str(modelfile_path)]
    if shutil.which("ollama") is None:
        return {"command": " ".join(command), "ran": False, "reason": "no ollama binary on PATH"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise ScriptError("E_EXPORT", f"ollama create failed: {done.stderr.strip()[-500:]}",
                          hint="Is `ollama serve` running? The Modelfile is kept; retry by hand.")
    return {"command": " ".join(command), "ran": True}
