"""Good/bad labels on agent traces and completions, kept in the project as KTO records.

`factory label` shows what has no label yet, one item at a time, and appends each answer to
<raw_dir>/labels.jsonl. Every line there is a record in the KTO format (prompt, completion,
label) plus where it came from, so the labels are training data as they stand: the format gate
reads them like any other raw file (KTO rows, or the label of a trace), and a `learned` reward
can name the same file as its `examples`. The file is only ever appended to, one fsynced line
per label; an item is labelled once its id is in the file, so a session stopped anywhere
resumes where it stopped. A later label of the same item is a correction: the last one counts.

Items come from the project's raw data (agent traces and conversations whose last turn is the
assistant's, with no label of their own) or from a JSONL file of completions (`--from`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from factory import atomic
from factory.errors import FactoryError
from factory.project import Project

LABELS_FILE = "labels.jsonl"


@dataclass(frozen=True)
class Item:
    id: str
    source: str
    # The prompt ends at the last user turn, as the splits' prompt key does (normalise.prompt_of):
    # a label then lands in the same split as the trace it judges, never across the eval line.
    prompt: list[dict]
    answer: list[dict]   # the turns being judged: tool calls, their results, the final reply

    @property
    def completion(self) -> str:
        return _text(self.answer[-1]) if self.answer else ""

    @property
    def query(self) -> str:
        users = [m for m in self.prompt if m.get("role") == "user"]
        return _text(users[-1]) if users else ""

    @property
    def tools(self) -> list[str]:
        return [call.get("function", {}).get("name", "?") for m in self.answer
                for call in m.get("tool_calls") or []]

    def to_dict(self) -> dict:
        return {"id": self.id, "source": self.source, "query": self.query,
                "tools": self.tools, "response": self.completion}


def labels_path(project: Project, raw_dir: str) -> Path:
    return project.inside(raw_dir) / LABELS_FILE


def read_labels(path: Path) -> dict[str, dict]:
    """Item id -> its latest label line."""
    return {row["source_id"]: row for row in atomic.read_appended(path)
            if isinstance(row, dict) and "source_id" in row}


def from_raw(project: Project, data: Any) -> Iterator[Item]:
    """Unlabelled items in the raw data: answered conversations and traces with no label."""
    from factory import normalise, records

    tally = records.Tally()
    for example in records.pool(project.inside(data.raw_dir), project, data, tally):
        if example["source"].rsplit(":", 1)[0].endswith(LABELS_FILE):
            continue  # our own output
        messages = example["messages"]
        if (example["kind"] != "chat" or example.get("label") is not None or not messages
                or messages[-1].get("role") != "assistant" or not _text(messages[-1])):
            continue
        asked = len(normalise.prompt_of(example))
        yield Item(example["id"], example["source"], messages[:asked], messages[asked:])


def from_file(project: Project, path: str) -> Iterator[Item]:
    """Items from a JSONL file of {"prompt": str | messages, "completion": str | messages}."""
    source = project.inside(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FactoryError("E_LABEL", f"cannot read {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
            prompt, answer = _messages(row["prompt"]), _answer(row["completion"])
        except (ValueError, KeyError, TypeError) as exc:
            raise FactoryError("E_LABEL", f"{where}: expected {{\"prompt\": text or messages, "
                                          f"\"completion\": text or messages}} ({exc})",
                               details={"file": path, "line": number}) from None
        digest = hashlib.sha256(json.dumps([prompt, answer], sort_keys=True)
                                .encode()).hexdigest()[:16]
        yield Item(digest, where, prompt, answer)


def pending(items: Iterator[Item], labelled: dict[str, dict]) -> list[Item]:
    seen, out = set(labelled), []
    for item in items:
        if item.id not in seen:
            seen.add(item.id)
            out.append(item)
    return out


def parse_answers(lines: list[str], known: dict[str, Item],
                  labelled: dict[str, dict]) -> list[tuple[Item, bool, str | None]]:
    """Assistant input: one JSON object per line, {"id", "label": "good" | "bad" | bool,
    "note"?}. Every line is checked before any is recorded: one bad line records nothing."""
    answers, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            item_id, label = row["id"], row["label"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"line {number}: expected {{\"id\": ..., \"label\": \"good\" | "
                            f"\"bad\"}}")
            continue
        good = _good(label)
        if good is None:
            problems.append(f"line {number}: label must be \"good\" or \"bad\", not {label!r}")
        elif item_id not in known and item_id not in labelled:
            problems.append(f"line {number}: no item with id {item_id!r}")
        else:
            item = known.get(item_id) or _item_of(labelled[item_id])
            answers.append((item, good, row.get("note")))
    if problems:
        raise FactoryError("E_LABEL", f"{len(problems)} bad label line(s), nothing recorded: "
                           + "; ".join(problems[:5]), details={"bad_lines": problems})
    return answers


def record(path: Path, item: Item, good: bool, note: str | None = None) -> dict:
    """Append one label as a KTO record; returns the line written."""
    row = {"prompt": item.prompt, "completion": item.answer, "label": good,
           "source_id": item.id, "source": item.source,
           "labelled_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if note:
        row["note"] = str(note)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.append_line(path, json.dumps(row, ensure_ascii=False, sort_keys=True))
    return row


def counts(labelled: dict[str, dict]) -> dict[str, int]:
    good = sum(1 for row in labelled.values() if row.get("label") is True)
    return {"good": good, "bad": len(labelled) - good}


def _good(label: Any) -> bool | None:
    """True for "good" (or true), False for "bad" (or false), None for anything else."""
    if isinstance(label, bool):
        return label
    return {"good": True, "bad": False}.get(label) if isinstance(label, str) else None


def _item_of(row: dict) -> Item:
    return Item(row["source_id"], row.get("source", ""), row["prompt"], row["completion"])


def _messages(prompt: Any) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m for m in prompt):
        return prompt
    raise TypeError("prompt is neither text nor a list of messages")


def _answer(completion: Any) -> list[dict]:
    if isinstance(completion, str):
        return [{"role": "assistant", "content": completion}]
    if isinstance(completion, list) and completion and all(isinstance(m, dict) and "role" in m
                                                           for m in completion):
        return completion
    raise TypeError("completion is neither text nor a list of messages")


def _text(message: dict) -> str:
    from factory.normalise import content_text

    return content_text(message.get("content"))


def session(todo: list[Item], path: Path, ask, show, lock) -> dict:
    """Label items one at a time: show(text) prints, ask(prompt) reads an answer (EOFError
    ends), lock() is held around each write. g: good, b: bad, s: skip, q: quit."""
    recorded = {"good": 0, "bad": 0, "skipped": 0}
    for number, item in enumerate(todo, 1):
        show(_screen(item, number, len(todo)))
        while True:
            try:
                answer = ask("[g]ood  [b]ad  [s]kip  [q]uit > ").strip().lower()
            except EOFError:
                answer = "q"
            if answer in ("g", "b", "s", "q", "good", "bad", "skip", "quit"):
                break
            show("answer g, b, s or q")
        if answer[0] == "q":
            break
        if answer[0] == "s":
            recorded["skipped"] += 1
            continue
        with lock():
            record(path, item, answer[0] == "g")
        recorded["good" if answer[0] == "g" else "bad"] += 1
    return recorded


def _screen(item: Item, number: int, total: int) -> str:
    tools = ", ".join(item.tools) or "none"
    return (f"\n--- {number}/{total}  {item.source}  (id {item.id})\n"
            f"query:    {item.query}\ntools:    {tools}\nresponse: {item.completion}")
