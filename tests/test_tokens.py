"""Token counts the format gate and the finetune script measure every row with."""
from __future__ import annotations

from factory.runtime import tokens


def test_counts_equal_the_tokenizers_own_and_are_never_truncated(demo_template):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_template / "models" / "base")
    texts = ["<|im_start|>user\nWeather in Paris?<|im_end|>\n", "", "x " * 300]
    expected = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    assert tokens.count(tokenizer, texts) == expected

    # A tokenizer.json that truncates must not make a long row look short.
    tokenizer.backend_tokenizer.enable_truncation(8)
    fresh = AutoTokenizer.from_pretrained(demo_template / "models" / "base")
    fresh.backend_tokenizer.enable_truncation(8)
    assert tokens.count(fresh, texts) == expected and expected[2] > 8


def test_row_lengths_take_the_longest_sequence_and_report_unrenderable_rows(demo_template):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_template / "models" / "base")
    prompt = [{"role": "user", "content": "Pick one"}]
    short, long = [{"role": "assistant", "content": "a"}], [{"role": "assistant",
                                                             "content": "b " * 40}]
    rows = [{"prompt": prompt, "chosen": short, "rejected": long},
            {"prompt": [{"role": "user", "content": 3}], "chosen": short, "rejected": short}]
    first, second = tokens.lengths(tokenizer, rows, "dpo")
    assert first == tokens.count(tokenizer, [tokenizer.apply_chat_template(
        prompt + long, tokenize=False)])[0]
    # ChatML adds content to a string: an integer content cannot be rendered.
    assert second.startswith("the chat template cannot render it")
