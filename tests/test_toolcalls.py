import json

from factory.runtime.scoring import example_scores
from factory.toolcalls import ToolCall, argument_errors, declared, extract, judge, reference_calls

FG = ("<start_function_call>call:get_weather{city:<escape>Paris<escape>,days:2.50}"
      "<end_function_call>")
TOOLS = [{"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city"],
                   "properties": {"city": {"type": "string"}, "days": {"type": "number"},
                                  "unit": {"enum": ["celsius", "fahrenheit"]}}}}}]
REF = [ToolCall("get_weather", {"city": "Paris", "days": 2.5})]


def test_functiongemma_and_every_openai_style_read_the_same():
    answers = [
        FG,
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2.5}}\n'
        '</tool_call>',
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\", \\"days\\": 2.5}"}',
        '```json\n[{"name": "get_weather", "parameters": {"city": "Paris", "days": 2.5}}]\n```',
        json.dumps({"tool_calls": [{"type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": "Paris", "days": 2.5})}}]}),
    ]
    for answer in answers:
        got = extract(answer)
        assert got.error is None and [c.key() for c in got.calls] == [REF[0].key()], answer
        assert judge(answer, REF, TOOLS) == {"tool_parse": 1.0, "tool_name": 1.0,
                                             "tool_args_exact": 1.0, "tool_args_valid": 1.0}


def test_malformed_and_missing_calls_score_zero():
    broken = "<start_function_call>call:get_weather{city:Paris}<end_function_call>"
    assert extract(broken).error is not None
    assert judge(broken, REF, TOOLS)["tool_parse"] == 0.0
    assert judge("It is sunny in Paris.", REF, TOOLS) == dict.fromkeys(
        ("tool_parse", "tool_name", "tool_args_exact", "tool_args_valid"), 0.0)
    assert extract('<tool_call>{"name": broken</tool_call>').error.startswith("a tool call")
    assert extract("{not json at all").calls == []


def test_each_metric_catches_its_own_mistake():
    wrong_value = FG.replace("Paris", "Rome")
    assert judge(wrong_value, REF, TOOLS) == {"tool_parse": 1.0, "tool_name": 1.0,
                                              "tool_args_exact": 0.0, "tool_args_valid": 1.0}
    wrong_name = FG.replace("get_weather", "get_forecast")
    scores = judge(wrong_name, REF, TOOLS)
    assert scores["tool_name"] == 0.0 and scores["tool_args_valid"] == 0.0  # undeclared tool
    extra_arg = '{"name": "get_weather", "arguments": {"city": "Paris", "days": 2.5, "x": 1}}'
    scores = judge(extra_arg, REF, TOOLS)
    assert scores["tool_args_exact"] == 0.0 and scores["tool_args_valid"] == 0.0
    # Without declared tools, validity is only "arguments are a JSON object".
    assert judge(extra_arg, REF, None)["tool_args_valid"] == 1.0
    bad_json_args = '{"name": "get_weather", "arguments": "{city: Paris"}'
    assert judge(bad_json_args, REF, None)["tool_args_valid"] == 0.0


def test_schema_checks_name_the_field():
    schemas = declared(TOOLS)
    assert argument_errors(ToolCall("get_weather", {"days": 1}), schemas) == [
        "get_weather.city: required"]
    assert argument_errors(ToolCall("get_weather", {"city": 3}), schemas) == [
        "get_weather.city: expected string"]
    assert argument_errors(ToolCall("get_weather", {"city": "a", "unit": "kelvin"}), schemas) \
        == ["get_weather.unit: not one of ['celsius', 'fahrenheit']"]
    assert argument_errors(ToolCall("get_weather", {"city": "a", "days": True}), schemas) == [
        "get_weather.days: expected number"]


def test_references_in_either_style():
    openai = {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather",
                                          "arguments": '{"city": "Paris", "days": 2.5}'}}]}
    assert [c.key() for c in reference_calls(openai)] == [REF[0].key()]
    assert [c.key() for c in reference_calls({"role": "assistant", "content": FG})] == [
        REF[0].key()]
    assert reference_calls({"role": "assistant", "content": "plain"}) == []


def test_example_scores_mark_tool_metrics_not_applicable_without_a_call():
    record = {"messages": [{"role": "user", "content": "hi"},
                           {"role": "assistant", "content": "Hello, World!"}]}
    metrics = ["exact_match", "normalized_match", "tool_name"]
    scores = example_scores("hello,   world", record, metrics, {})
    assert scores["exact_match"] == 0.0 and scores["normalized_match"] == 1.0
    assert scores["tool_name"] is None and scores["reference"] == "Hello, World!"
    tool_record = {"messages": [{"role": "user", "content": "weather?"},
                                {"role": "assistant", "content": FG}], "tools": TOOLS}
    scores = example_scores(FG, tool_record, metrics, {})
    assert scores["exact_match"] == 1.0 and scores["tool_args_exact"] == 1.0
