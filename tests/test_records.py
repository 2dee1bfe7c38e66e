import json

from factory.records import ReadOptions, Tally, curate, plan, read
from factory.splits import bucket


class Result:
    """Everything read under a raw folder, deduplicated, with the tally and the rejects."""

    def __init__(self, raw, root, **options):
        self.tally, self.rejected = Tally(), []
        opts = ReadOptions(**options)
        specs = plan(raw, root, opts, lambda p: p.resolve(), self.tally)
        examples = read(specs, root, opts, self.tally,
                        lambda f, pos, rec, probs: self.rejected.append((rec, probs)))
        self.records = list(curate(examples, self.tally, None))
        self.problems = self.tally.problems
        self.bad_count = self.tally.bad
        self.duplicates = self.tally.total("duplicates")


def read_raw(raw, root):
    return Result(raw, root)


def write_lines(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def chat(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def test_messages_and_sharegpt_normalise_to_the_same_record(tmp_path):
    write_lines(tmp_path / "raw" / "a.jsonl", [chat("hi", "hello")])
    (tmp_path / "raw" / "b.json").write_text(json.dumps([{"conversations": [
        {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}]))
    result = read_raw(tmp_path / "raw", tmp_path)
    assert result.bad_count == 0 and result.duplicates == 1
    assert result.records[0]["messages"] == chat("hi", "hello")["messages"]
    assert result.records[0]["source"] == "raw/a.jsonl:1"
    assert [r["format"] for r in result.records] == ["messages"]


def test_sharegpt_roles_and_system_prompt(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "s.json").write_text(json.dumps([{
        "system": "be brief",
        "conversations": [{"from": "human", "value": "weather?"},
                          {"from": "function_call",
                           "value": '{"name": "weather", "arguments": {}}'},
                          {"from": "observation", "value": "sunny"},
                          {"from": "gpt", "value": "It is sunny."}]}]))
    record = read_raw(tmp_path / "raw", tmp_path).records[0]
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant", "tool",
                                                      "assistant"]


def test_every_bad_record_is_named_with_file_line_field(tmp_path):
    write_lines(tmp_path / "raw" / "bad.jsonl", [
        chat("ok", "fine"),
        {"messages": [{"role": "human", "content": "x"}, {"role": "assistant", "content": "y"}]},
        "{not json",
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 5}]},
        {"text": "no messages"},
        {"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q2"}]},
    ])
    result = read_raw(tmp_path / "raw", tmp_path)
    assert len(result.records) == 1 and result.bad_count == 5
    by_line = {p.pos: p for p in result.problems}
    assert by_line[2].field == "messages.0.role" and "'user'" in by_line[2].expected
    assert by_line[2].found == "str 'human'"
    assert by_line[3].field == "(record)" and "invalid JSON" in by_line[3].found
    assert by_line[4].field == "messages.1.content" and "string" in by_line[4].expected
    assert by_line[5].field == "messages" and "required" in by_line[5].expected
    assert by_line[6].field == "messages.1" and "assistant turn" in by_line[6].expected
    assert all(p.file == "raw/bad.jsonl" and p.unit == "line" for p in result.problems)
    assert str(by_line[2]).startswith("raw/bad.jsonl:2: messages.0.role: expected")


def test_skip_mode_keeps_rejects_with_reasons(tmp_path):
    write_lines(tmp_path / "raw" / "x.jsonl", [chat("a", "b"), {"messages": []}])
    result = read_raw(tmp_path / "raw", tmp_path)
    ((record, problems),) = result.rejected
    assert record == {"messages": []}
    assert problems[0].field == "messages" and "at least 1" in problems[0].expected


def test_record_ids_ignore_metadata(tmp_path):
    write_lines(tmp_path / "raw" / "x.jsonl", [{**chat("a", "b"), "reward": 0.9},
                                               {**chat("a", "b"), "reward": 0.1}])
    result = read_raw(tmp_path / "raw", tmp_path)
    assert len(result.records) == 1 and result.duplicates == 1
    assert result.records[0]["reward"] == 0.9 and result.records[0]["meta"] == {}


def test_split_depends_only_on_the_record():
    ids = [f"{i:016x}" for i in range(2000)]
    first = {i: bucket(i, "salt", 0.1, 0.1) for i in ids}
    assert first == {i: bucket(i, "salt", 0.1, 0.1) for i in reversed(ids)}
    shares = {name: sum(v == name for v in first.values()) / len(ids)
              for name in ("train", "val", "eval")}
    assert 0.07 < shares["eval"] < 0.13 and 0.07 < shares["val"] < 0.13
    assert {i: bucket(i, "other", 0.1, 0.1) for i in ids} != first
