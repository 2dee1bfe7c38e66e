"""A LLaMA-Factory data folder, dataset_info.json and all, is read as it is."""
import json

import pytest

from factory.errors import FactoryError
from factory.records import ReadOptions, Tally, plan, read


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def load(tmp_path, **options):
    tally = Tally()
    opts = ReadOptions(**options)
    specs = plan(tmp_path / "raw", tmp_path, opts, lambda p: p.resolve(), tally)
    return list(read(specs, tmp_path, opts, tally)), tally


@pytest.fixture
def lf_folder(tmp_path):
    folder = tmp_path / "raw" / "lf"
    write(folder / "alpaca_en.json", [
        {"q": "Translate", "ctx": "chat", "a": "cat", "sys": "be brief",
         "hist": [["hi", "hello"]]}])
    write(folder / "glaive.json", [{"chat": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "sunny"}], "tools": "[]"}])
    write(folder / "sharegpt_dpo.json", [{
        "conversations": [{"from": "human", "value": "pick"}],
        "chosen": {"from": "gpt", "value": "good"},
        "rejected": {"from": "gpt", "value": "bad"}}])
    write(folder / "kto.json", [{
        "messages": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
        "tag": False}])
    write(folder / "unlisted.jsonl", {"ignored": True})
    write(folder / "dataset_info.json", {
        "my_alpaca": {"file_name": "alpaca_en.json",
                      "columns": {"prompt": "q", "query": "ctx", "response": "a",
                                  "system": "sys", "history": "hist"}},
        "my_openai": {"file_name": "glaive.json", "formatting": "sharegpt",
                      "columns": {"messages": "chat", "tools": "tools"},
                      "tags": {"role_tag": "role", "content_tag": "content",
                               "user_tag": "user", "assistant_tag": "assistant"}},
        "my_dpo": {"file_name": "sharegpt_dpo.json", "formatting": "sharegpt", "ranking": True,
                   "columns": {"messages": "conversations", "chosen": "chosen",
                               "rejected": "rejected"}},
        "my_kto": {"file_name": "kto.json", "formatting": "sharegpt",
                   "columns": {"messages": "messages", "kto_tag": "tag"}},
        "on_the_hub": {"hf_hub_url": "someone/dataset"},
    })
    return tmp_path


def test_every_entry_is_read_with_its_columns_and_tags(lf_folder):
    examples, tally = load(lf_folder)
    by_file = {e["source"].split(":")[0]: e for e in examples}
    alpaca = by_file["raw/lf/alpaca_en.json"]
    assert [m["content"] for m in alpaca["messages"]] == ["be brief", "hi", "hello",
                                                          "Translate\nchat", "cat"]
    openai = by_file["raw/lf/glaive.json"]
    assert [m["role"] for m in openai["messages"]] == ["user", "assistant"]
    dpo = by_file["raw/lf/sharegpt_dpo.json"]
    assert dpo["kind"] == "preference" and dpo["chosen"][0]["content"] == "good"
    kto = by_file["raw/lf/kto.json"]
    assert kto["kind"] == "binary" and kto["label"] is False
    assert "raw/lf/unlisted.jsonl" not in tally.files
    assert tally.files["raw/lf/alpaca_en.json"].dataset == "my_alpaca"
    assert any("on_the_hub" in note and "hf_hub_url" in note for note in tally.notes)


def test_only_the_named_datasets_are_read(lf_folder):
    examples, _ = load(lf_folder, datasets=["my_dpo"])
    assert [e["kind"] for e in examples] == ["preference"]


def test_a_named_dataset_that_cannot_be_read_is_an_error(lf_folder):
    with pytest.raises(FactoryError) as err:
        load(lf_folder, datasets=["on_the_hub"])
    assert err.value.code == "E_SCHEMA" and "only local files" in err.value.message
    with pytest.raises(FactoryError) as err:
        load(lf_folder, datasets=["nope"])
    assert err.value.code == "E_CONFIG" and "'nope'" in err.value.message


def test_a_bad_row_is_named_in_its_own_file(lf_folder):
    write(lf_folder / "raw" / "lf" / "alpaca_en.json", [{"q": "x", "a": 3}])
    _, tally = load(lf_folder, datasets=["my_alpaca"])
    (problem,) = tally.problems
    assert (problem.file, problem.pos, problem.field) == ("raw/lf/alpaca_en.json", 0, "output")


def test_file_name_must_stay_inside_the_project(tmp_path):
    write(tmp_path / "raw" / "dataset_info.json", {"x": {"file_name": "../../etc/passwd"}})

    def inside(path):
        resolved = path.resolve()
        if tmp_path not in resolved.parents:
            raise FactoryError("E_PATH_ESCAPE", f"{path} is outside")
        return resolved

    tally = Tally()
    with pytest.raises(FactoryError) as err:
        plan(tmp_path / "raw", tmp_path, ReadOptions(), inside, tally)
    assert err.value.code == "E_PATH_ESCAPE"
