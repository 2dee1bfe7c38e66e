"""Examples of every kind become the rows each method trains on, or are counted as unusable."""
from factory import methods

PROMPT = [{"role": "user", "content": "q"}]


def answer(text):
    return [{"role": "assistant", "content": text}]


CHAT = {"kind": "chat", "id": "c", "key": "k", "source": "f:1", "messages": PROMPT + answer("a"),
        "meta": {}}
PREF = {"kind": "preference", "id": "p", "key": "k", "source": "f:2", "messages": PROMPT,
        "chosen": answer("good"), "rejected": answer("bad"), "meta": {}}
BINARY = {"kind": "binary", "id": "b", "key": "k", "source": "f:3", "messages": PROMPT,
          "completion": answer("a"), "label": True, "meta": {}}
GROUP = {"kind": "group", "id": "g", "key": "k", "source": "f:4", "messages": PROMPT,
         "completions": [answer("x"), answer("y"), answer("z")], "rewards": [0.2, 0.9, -1.0],
         "meta": {}}
PROMPT_ONLY = {"kind": "prompt", "id": "q", "key": "k", "source": "f:5", "messages": PROMPT,
               "meta": {"tests": ["t"]}}


def test_sft_takes_conversations_and_desirable_completions_only():
    assert methods.rows_for(CHAT, "sft")[0]["messages"] == PROMPT + answer("a")
    assert methods.rows_for(BINARY, "sft")[0]["messages"] == PROMPT + answer("a")
    assert methods.rows_for({**BINARY, "label": False}, "sft") == []
    assert methods.rows_for({**CHAT, "label": False}, "sft") == []
    assert methods.rows_for(PREF, "sft") == [] and methods.rows_for(PROMPT_ONLY, "sft") == []


def test_dpo_pairs_the_best_and_worst_of_a_group():
    (row,) = methods.rows_for(GROUP, "dpo")
    assert row["chosen"] == answer("y") and row["rejected"] == answer("z")
    assert methods.rows_for({**GROUP, "rewards": [1.0, 1.0, 1.0]}, "dpo") == []
    assert methods.rows_for(PREF, "dpo")[0]["rejected"] == answer("bad")
    assert methods.rows_for(CHAT, "dpo") == []


def test_kto_labels_from_labels_pairs_rewards_and_groups():
    assert [r["label"] for r in methods.rows_for(PREF, "kto")] == [True, False]
    assert [r["label"] for r in methods.rows_for(GROUP, "kto", 0.5)] == [False, True, False]
    rewarded = {**CHAT, "reward": 0.4}
    (row,) = methods.rows_for(rewarded, "kto", 0.5)
    assert row["label"] is False and row["prompt"] == PROMPT and row["completion"] == answer("a")
    assert methods.rows_for(CHAT, "kto") == []  # neither label nor reward: nothing to learn


def test_grpo_prompts_carry_their_reference_and_columns():
    (row,) = methods.rows_for(CHAT, "grpo")
    assert row["prompt"] == PROMPT and row["answer"] == "a"
    (row,) = methods.rows_for(PROMPT_ONLY, "grpo")
    assert "answer" not in row and row["meta"] == {"tests": ["t"]}
    assert methods.rows_for(GROUP, "grpo")[0]["rewards"] == [0.2, 0.9, -1.0]


def test_rewarded_chats_on_one_prompt_become_one_group():
    a = {**CHAT, "id": "1", "reward": 0.1, "messages": PROMPT + answer("a")}
    b = {**CHAT, "id": "2", "reward": 0.8, "messages": PROMPT + answer("b")}
    lone = {**CHAT, "id": "3", "key": "other", "reward": 0.5}
    rows = [r for e in (a, b, lone) for r in methods.rows_for(e, "grpo")]
    grouped = methods.group_rewarded_chats(rows, {"1": 0.1, "2": 0.8, "3": 0.5})
    assert len(grouped) == 2
    group = next(r for r in grouped if "completions" in r)
    assert group["rewards"] == [0.1, 0.8] and group["answer"] == "b"


def test_tool_call_answers_become_functiongemma_text():
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]}
    assert methods.answer_text(call) == (
        "<start_function_call>call:f{x:1}<end_function_call>")


def test_eval_conversation_never_uses_a_bad_answer_as_reference():
    assert methods.eval_conversation(PREF)[-1]["content"] == "good"
    assert methods.eval_conversation(GROUP)[-1]["content"] == "y"
    assert methods.eval_conversation({**BINARY, "label": False}) is None
    assert methods.eval_conversation({**CHAT, "label": False}) is None
    assert methods.eval_conversation(PROMPT_ONLY) is None
    assert methods.eval_conversation({**PROMPT_ONLY, "answer": "4"})[-1]["content"] == "4"
