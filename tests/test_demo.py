from factory import demo_data


def test_demo_records_are_deterministic_distinct_tool_calls():
    records = demo_data.demo_records(200)
    assert records == demo_data.demo_records(200)
    assert len({r["messages"][1]["content"] for r in records}) == 200
    for r in records:
        answer = r["messages"][-1]["content"]
        assert answer.startswith("<start_function_call>call:")
        assert answer.endswith("}<end_function_call>")


def test_sabotage_keeps_prompts_and_moves_every_answer():
    records = demo_data.demo_records(100)
    bad = demo_data.sabotaged(records)
    assert [r["messages"][:-1] for r in bad] == [r["messages"][:-1] for r in records]
    assert all(b["messages"][-1] != r["messages"][-1] for b, r in zip(bad, records))
    assert sorted(b["messages"][-1]["content"] for b in bad) == \
        sorted(r["messages"][-1]["content"] for r in records)


def test_tiny_model_tokenizer_keeps_call_markers_and_masks_assistant(demo_template):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_template / "models" / "base")
    messages = demo_data.demo_records(1)[0]["messages"]
    answer = messages[-1]["content"]
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == answer
    assert tok.convert_tokens_to_ids("<escape>") in ids
    enc = tok.apply_chat_template(messages, tokenize=True, return_dict=True,
                                  return_assistant_tokens_mask=True)
    trained = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tok.decode(trained) == answer + "<|im_end|>"
