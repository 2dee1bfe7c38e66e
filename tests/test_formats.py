"""Every data format: detection, validation with precise problems, and normalisation."""
import json
from pathlib import Path

import jsonschema
import pytest

from factory import formats
from factory.normalise import example_id, prompt_key
from factory.records import ReadOptions, Tally, plan, read

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
FG_CALL = ("<start_function_call>call:writeTemplate{path:<escape>button.tsx<escape>,"
           "content:<escape>export const Button = ...<escape>}<end_function_call>")

VALID = {
    "messages": {"messages": [{"role": "system", "content": "s"},
                              {"role": "user", "content": "weather?"},
                              {"role": "assistant", "content": None, "tool_calls": [
                                  {"type": "function", "id": "c1", "function": {
                                      "name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
                              {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
                              {"role": "assistant", "content": [{"type": "text", "text": "Sun."}]}],
                 "tools": [{"type": "function", "function": {"name": "get_weather"}}]},
    "trajectory": {"messages": [{"role": "system", "content": "You are a UI agent"},
                                {"role": "user", "content": "Create a primary button"},
                                {"role": "assistant", "content": FG_CALL}],
                   "reward": 0.85,
                   "tiers": {"static": {"passed": True, "tier": 1, "checks": []}},
                   "structural": {"block": "card"},
                   "storyResult": {"passed": True, "totalAssertions": 5}},
    "sharegpt": {"system": "be brief", "tools": "[{\"name\": \"get_weather\"}]",
                 "conversations": [
                     {"from": "human", "value": "weather in Oslo?"},
                     {"from": "function_call",
                      "value": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}"},
                     {"from": "observation", "value": "sunny"},
                     {"from": "gpt", "value": "It is sunny."}]},
    "alpaca": {"instruction": "Translate", "input": "chat", "output": "cat", "system": "s",
               "history": [["hi", "hello"]]},
    "dpo": {"prompt": "Make a button", "chosen": FG_CALL, "rejected": "no"},
    "kto": {"prompt": [{"role": "user", "content": "q"}], "completion": "a", "label": False},
    "grpo": {"prompt": "2+2?", "completions": ["4", "5", "four"], "rewards": [1.0, -0.5, 0.8]},
    "prompt": {"prompt": "2+2?", "answer": "4", "tests": ["assert f() == 4"]},
    "agent_trace": {"user_query": "Hey bist du online?", "final_response": "Ja!",
                    "tool_calls": [{"tool_name": "ping", "arguments": {"host": "a"},
                                    "result": {"ok": True}, "success": True},
                                   {"tool_name": "ping", "arguments": "{\"host\": \"b\"}",
                                    "success": False, "error": "timeout"}],
                    "reasoning_steps": [{"step_type": "final_result", "content": "x"}],
                    "total_tokens_in": 150, "total_tokens_out": 45, "total_cost": 0.0002,
                    "label": True, "reward_score": 0.9},
}


def read_records(tmp_path, rows, name="data.jsonl", **options):
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    (raw / name).write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                                    for r in rows))
    tally = Tally()
    opts = ReadOptions(**options)
    specs = plan(raw, tmp_path, opts, lambda p: p.resolve(), tally)
    return list(read(specs, tmp_path, opts, tally)), tally


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_each_format_is_detected_validated_and_agrees_with_its_schema_file(fmt, tmp_path):
    record = VALID[fmt]
    assert formats.detect(record) == fmt
    schema = json.loads((SCHEMAS / formats.schema_file(fmt)).read_text())
    jsonschema.Draft202012Validator(schema).validate(record)
    examples, tally = read_records(tmp_path, [record])
    assert tally.bad == 0, tally.problems
    assert examples[0]["format"] == fmt and examples[0]["source"] == "raw/data.jsonl:1"


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_schema_files_are_generated_from_the_models(fmt):
    on_disk = json.loads((SCHEMAS / formats.schema_file(fmt)).read_text())
    assert on_disk == formats.json_schema(fmt), "run: python -m factory.formats --write schemas"


INVALID = [
    # (format, record, field, expected substring, found substring)
    ("messages", {"messages": [{"role": "bot", "content": "x"}]}, "messages.0.role",
     "'system', 'user', 'assistant' or 'tool'", "'bot'"),
    ("messages", {"messages": [{"role": "user", "contnet": "x"},
                               {"role": "assistant", "content": "y"}]},
     "messages.0.contnet", "no such field", "'x'"),
    ("messages", {"messages": [{"role": "user", "content": "q"}]}, "messages.0",
     "end with an assistant turn", "'user'"),
    ("messages", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant",
                  "content": "<start_function_call>call:f{a:<escape>x}<end_function_call>"}]},
     "messages.1.content", "well-formed FunctionGemma", "offset"),
    ("trajectory", {"messages": VALID["trajectory"]["messages"], "reward": "high"}, "reward",
     "number", "'high'"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "q"},
                                    {"from": "function_call", "value": "not json"},
                                    {"from": "gpt", "value": "a"}]},
     "conversations.1.value", "JSON function call", "invalid JSON"),
    ("alpaca", {"instruction": "q", "output": {"text": "a"}}, "output", "string", "dict"),
    ("dpo", {"prompt": "q", "chosen": "a", "rejected": "a"}, "rejected", "different", "same"),
    ("dpo", {"prompt": "q", "chosen": "a"}, "rejected", "required", "nothing"),
    ("kto", {"prompt": "q", "completion": "a", "label": "maybe"}, "label", "boolean", "maybe"),
    ("grpo", {"prompt": "q", "completions": ["a", "b"], "rewards": [1.0]}, "rewards",
     "at least 2", "list of 1"),
    ("grpo", {"prompt": "q", "completions": ["a", "b", "c"], "rewards": [1.0, 0.0]}, "rewards",
     "3 rewards", "2"),
    ("agent_trace", {"user_query": "q", "final_response": "a",
                     "tool_calls": [{"tool_name": "t"}]}, "tool_calls.0.success", "required",
     "nothing"),
]


@pytest.mark.parametrize("fmt,record,field,expected,found", INVALID)
def test_invalid_records_name_line_field_expected_and_found(tmp_path, fmt, record, field,
                                                             expected, found):
    examples, tally = read_records(tmp_path, [VALID[fmt], record], format=fmt)
    assert len(examples) == 1 and tally.bad == 1
    problem = next(p for p in tally.problems if p.field == field)
    assert (problem.file, problem.pos, problem.unit) == ("raw/data.jsonl", 2, "line")
    assert expected in problem.expected, problem
    assert found in problem.found, problem


def test_a_union_field_reports_the_branch_the_user_meant(tmp_path):
    bad = {"prompt": [{"role": "user", "content": "q", "extra": 1}], "completion": "a",
           "label": True}
    _, tally = read_records(tmp_path, [bad])
    assert [p.field for p in tally.problems] == ["prompt.0.extra"]


def test_all_bad_records_are_counted_and_the_first_fifty_kept(tmp_path):
    rows = [VALID["messages"]] + ["{not json"] * 70
    examples, tally = read_records(tmp_path, rows)
    assert len(examples) == 1 and tally.bad == 70 and len(tally.problems) == 50
    assert tally.problems[0].pos == 2 and "invalid JSON" in tally.problems[0].found
    assert tally.reasons["(record): expected a JSON record"] == 70


def test_a_file_keeps_the_format_of_its_first_record(tmp_path):
    _, tally = read_records(tmp_path, [VALID["dpo"], VALID["kto"]])
    assert tally.files["raw/data.jsonl"].format == "dpo"
    assert tally.problems[0].field == "chosen" and tally.problems[0].pos == 2


def test_format_overrides_by_glob(tmp_path):
    examples, tally = read_records(tmp_path, [{"prompt": "q", "answer": "a"}],
                                   formats={"data.*": "prompt"}, format="dpo")
    assert tally.bad == 0 and examples[0]["kind"] == "prompt"


def test_normalised_shapes(tmp_path):
    by_fmt = {}
    for fmt in formats.FORMATS:  # one file, one format: each alone
        (ex,), _ = read_records(tmp_path, [VALID[fmt]], name=f"{fmt}.jsonl")
        (tmp_path / "raw" / f"{fmt}.jsonl").unlink()
        by_fmt[fmt] = ex
    sharegpt = by_fmt["sharegpt"]
    assert [m["role"] for m in sharegpt["messages"]] == ["system", "user", "assistant", "tool",
                                                         "assistant"]
    assert sharegpt["messages"][2]["tool_calls"][0]["function"] == {
        "name": "get_weather", "arguments": {"city": "Oslo"}}
    assert sharegpt["tools"] == [{"name": "get_weather"}]
    messages = by_fmt["messages"]["messages"]
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}
    assert messages[4] == {"role": "assistant", "content": "Sun."}
    trajectory = by_fmt["trajectory"]
    assert trajectory["reward"] == 0.85 and trajectory["meta"]["storyResult"]["passed"] is True
    alpaca = by_fmt["alpaca"]["messages"]
    assert [m["content"] for m in alpaca] == ["s", "hi", "hello", "Translate\nchat", "cat"]
    dpo = by_fmt["dpo"]
    assert dpo["kind"] == "preference" and dpo["chosen"][0]["content"] == FG_CALL
    assert by_fmt["kto"]["kind"] == "binary" and by_fmt["kto"]["label"] is False
    assert by_fmt["grpo"]["rewards"] == [1.0, -0.5, 0.8]
    assert by_fmt["prompt"]["answer"] == "4" and by_fmt["prompt"]["meta"]["tests"]
    trace = by_fmt["agent_trace"]
    assert [m["role"] for m in trace["messages"]] == ["user", "assistant", "tool", "assistant",
                                                      "tool", "assistant"]
    assert trace["messages"][4]["content"] == "error: timeout"
    assert trace["label"] is True and trace["reward"] == 0.9
    assert trace["meta"]["tool_success_rate"] == 0.5 and trace["meta"]["total_tokens_in"] == 150


def test_implicit_prompt_preference_pairs(tmp_path):
    convo = [{"role": "user", "content": "q"}]
    record = {"chosen": convo + [{"role": "assistant", "content": "good"}],
              "rejected": convo + [{"role": "assistant", "content": "bad"}]}
    (example,), _ = read_records(tmp_path, [record])
    assert example["messages"] == convo and example["rejected"][0]["content"] == "bad"


def test_tool_call_styles_convert_both_ways(tmp_path):
    (example,), _ = read_records(tmp_path, [VALID["trajectory"]], tool_style="openai")
    answer = example["messages"][-1]
    assert answer["content"] == "" and answer["tool_calls"][0]["function"] == {
        "name": "writeTemplate",
        "arguments": {"path": "button.tsx", "content": "export const Button = ..."}}
    (tmp_path / "raw" / "data.jsonl").unlink()
    (example,), _ = read_records(tmp_path, [VALID["sharegpt"]], tool_style="functiongemma")
    call = example["messages"][2]
    assert "tool_calls" not in call and call["content"] == (
        "<start_function_call>call:get_weather{city:<escape>Oslo<escape>}<end_function_call>")


def test_ids_ignore_metadata_and_whitespace_but_not_content(tmp_path):
    a = {"messages": [{"role": "user", "content": "q "}, {"role": "assistant", "content": "a"}],
         "reward": 1.0}
    b = {"messages": [{"content": "q", "role": "user"}, {"role": "assistant", "content": "a\r\n"}],
         "reward": 1.0, "note": "x"}
    c = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}],
         "reward": 1.0}
    (ea, eb, ec), _ = read_records(tmp_path, [a, b, c])
    assert example_id(ea) == example_id(eb) != example_id(ec)
    assert prompt_key(ea) == prompt_key(ec)


def test_csv_and_parquet_rows_are_validated_like_json(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.csv").write_text('instruction,input,output\nTranslate,chat,cat\n"Sum",,"2"\n'
                               ',only input,\n')
    pq.write_table(pa.Table.from_pylist([
        {"prompt": "q", "completion": "a", "label": True},
        {"prompt": "q2", "completion": "b", "label": None}]), raw / "b.parquet")
    tally = Tally()
    specs = plan(raw, tmp_path, ReadOptions(), lambda p: p.resolve(), tally)
    examples = list(read(specs, tmp_path, ReadOptions(), tally))
    assert [e["format"] for e in examples] == ["alpaca", "alpaca", "kto"]
    assert {(p.file, p.unit, p.pos, p.field) for p in tally.problems} == {
        ("raw/a.csv", "line", 4, "instruction"), ("raw/a.csv", "line", 4, "output"),
        ("raw/b.parquet", "index", 1, "label")}


def test_a_call_that_cannot_be_restyled_is_a_problem_not_a_crash(tmp_path):
    record = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": {"text": "a <escape> b"}}}]}]}
    examples, tally = read_records(tmp_path, [record], tool_style="functiongemma")
    assert not examples and tally.problems[0].field == "messages.1"
    assert "<escape>" in tally.problems[0].found
