"""factory label: good/bad labels on traces and completions, appended as KTO records."""
from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import pytest

from conftest import FACTORY, factory, make_chat_project
from factory import labels
from factory.errors import FactoryError


def trace(i: int) -> dict:
    city = ["Paris", "Oslo", "Lima", "Tokyo"][i % 4]
    return {"user_query": f"Weather in {city} on day {i}?",
            "tool_calls": [{"tool_name": "get_weather", "arguments": {"city": city},
                            "result": "sunny", "success": True}],
            "final_response": f"It is sunny in {city} on day {i}."}


@pytest.fixture
def trace_project(tmp_path, demo_template) -> Path:
    project = make_chat_project(tmp_path / "proj", demo_template)
    (project / "data" / "raw" / "chat.jsonl").unlink()
    rows = [trace(i) for i in range(240)] + [{**trace(999), "label": True}]
    (project / "data" / "raw" / "traces.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))
    return project


def items(n: int) -> list[labels.Item]:
    return [labels.Item(f"id{i}", f"f.jsonl:{i}", [{"role": "user", "content": f"q{i}"}],
                        [{"role": "assistant", "content": f"a{i}"}]) for i in range(n)]


def test_a_session_records_answers_and_resumes_where_it_stopped(tmp_path):
    path = tmp_path / "labels.jsonl"
    answers = iter(["g", "maybe", "b", "s", "q"])
    shown = []
    done = labels.session(items(5), path, ask=lambda _: next(answers), show=shown.append,
                          lock=contextlib.nullcontext)
    assert done == {"good": 1, "bad": 1, "skipped": 1}
    assert "answer g, b, s or q" in shown
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["source_id"], r["label"]) for r in rows] == [("id0", True), ("id1", False)]
    assert rows[0]["prompt"] == [{"role": "user", "content": "q0"}]
    assert rows[0]["completion"] == [{"role": "assistant", "content": "a0"}]
    # Resumed: the labelled ones are not asked again; an exhausted input stops cleanly.
    left = labels.pending(iter(items(5)), labels.read_labels(path))
    assert [i.id for i in left] == ["id2", "id3", "id4"]
    assert labels.session(left, path, ask=lambda _: (_ for _ in ()).throw(EOFError),
                          show=lambda _: None, lock=contextlib.nullcontext)["good"] == 0


def test_one_bad_answer_line_records_nothing(tmp_path):
    known = {i.id: i for i in items(3)}
    lines = ['{"id": "id0", "label": "good"}', '{"id": "id1", "label": "meh"}',
             '{"id": "nope", "label": "bad"}', "not json"]
    with pytest.raises(FactoryError) as caught:
        labels.parse_answers(lines, known, {})
    assert caught.value.code == "E_LABEL"
    assert len(caught.value.details["bad_lines"]) == 3
    assert "line 2: label must be" in caught.value.message
    ok = labels.parse_answers(['{"id": "id2", "label": false, "note": "wrong city"}'], known, {})
    assert [(i.id, good, note) for i, good, note in ok] == [("id2", False, "wrong city")]


def test_the_terminal_session_shows_query_tools_and_response(trace_project):
    proc = subprocess.run([FACTORY, "-C", str(trace_project), "label"], input="g\nb\nq\n",
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "query:    Weather in Paris on day 0?" in proc.stdout
    assert "tools:    get_weather" in proc.stdout
    assert "response: It is sunny in Paris on day 0." in proc.stdout
    assert "recorded 1 good, 1 bad" in proc.stdout
    rows = (trace_project / "data" / "raw" / "labels.jsonl").read_text().splitlines()
    assert [json.loads(r)["label"] for r in rows] == [True, False]


def test_assistants_label_over_json_and_the_labels_become_kto_data(trace_project):
    rc, out = factory("-C", str(trace_project), "label", "--list", "--limit", "100")
    assert rc == 0 and out["result"]["pending"] == 240  # the trace labelled in the data is not
    queue = out["result"]["items"]
    answers = "".join(json.dumps({"id": item["id"], "label": "good" if n % 3 else "bad"}) + "\n"
                      for n, item in enumerate(queue[:60]))
    proc = subprocess.run([FACTORY, "-C", str(trace_project), "label", "--json"],
                          input=answers, capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout)
    assert proc.returncode == 0, result
    assert result["result"]["recorded"] == {"good": 40, "bad": 20, "skipped": 0}
    assert result["result"]["pending"] == 180

    # A bad batch records nothing and says which line.
    proc = subprocess.run([FACTORY, "-C", str(trace_project), "label", "--json"],
                          input='{"id": "x", "label": "good"}\n', capture_output=True, text=True)
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"]["code"] == "E_LABEL"

    # The labels are KTO records: the format gate trains KTO on them.
    config_path = trace_project / "training-config.json"
    config = json.loads(config_path.read_text())
    config["training"]["method"] = "kto"
    config["rewards"] = [{"name": "labelled", "type": "learned",
                          "examples": "data/raw/labels.jsonl"}]
    config_path.write_text(json.dumps(config))
    for gate in ("baseline", "format"):
        rc, out = factory("-C", str(trace_project), "run", gate)
        assert rc == 0, out
    rows = [json.loads(line) for line in
            (trace_project / "data" / "splits" / "train.jsonl").read_text().splitlines()]
    kto_labels = {row["label"] for row in rows}
    assert kto_labels == {True, False} and len(rows) >= 40
    rc, out = factory("-C", str(trace_project), "check")
    rewards = next(i for i in out["error"]["details"]["items"] if i["name"] == "rewards") \
        if rc else next(i for i in out["result"]["items"] if i["name"] == "rewards")
    assert rewards["status"] == "pass", rewards
