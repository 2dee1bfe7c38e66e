"""`factory check`: the pre-training checklist, through the real CLI (no training, no torch)."""
import json

from conftest import factory
from factory import atomic, checklist
from factory.config import StageConfig, load_config
from factory.project import Project


def items_of(out):
    return {i["name"]: i for i in out["error"]["details"]["items"]}


def test_a_fresh_project_fails_with_a_hint_per_item(chat_project):
    rc, out = factory("-C", str(chat_project), "check")
    assert rc == 3 and out["error"]["code"] == "E_PRECHECK"
    items = items_of(out)
    assert items["config"]["status"] == "pass"
    assert items["baseline"]["status"] == "fail" and "factory run baseline" in items[
        "baseline"]["hint"]
    assert items["train_split"]["status"] == "fail"
    assert items["model"]["status"] == "pass", "the tiny model's template has generation markers"
    assert items["packages"]["status"] == "pass"
    assert out["next"]["reason"] == items["baseline"]["hint"]


def test_an_invalid_config_is_an_item_not_a_crash(chat_project):
    path = chat_project / "training-config.json"
    config = json.loads(path.read_text())
    config["training"]["batch_sise"] = 4
    path.write_text(json.dumps(config))
    rc, out = factory("-C", str(chat_project), "check")
    assert rc == 3
    (item,) = out["error"]["details"]["items"]
    assert item["name"] == "config" and "batch_sise" in item["detail"]


def test_splits_written_for_another_method_and_few_samples(chat_project):
    project = Project.open(chat_project)
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
            for _ in range(30)]
    atomic.write_jsonl(project.split_file("train"), rows)
    config = load_config(project.config_file)
    plain = {"train": "train", "val": "val"}
    items = {i.name: i for i in checklist.splits(project, config, "sft", plain)}
    assert items["train_split"].status == "pass"
    assert items["samples"].status == "warn" and "30 sft training rows" in items["samples"].detail
    assert items["val_split"].status == "warn"
    items = {i.name: i for i in checklist.splits(project, config, "dpo", plain)}
    assert items["train_split"].status == "fail" and "line 1" in items["train_split"].detail


def test_a_chain_checks_each_stage_split(chat_project):
    project = Project.open(chat_project)
    sft = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]
    atomic.write_jsonl(project.split_file("train"), sft * 120)
    config = load_config(project.config_file)
    config.training.stages = [StageConfig(method="sft"), StageConfig(method="dpo")]
    items = {i.name: i for i in checklist.stage_splits(project, config)}
    assert items["train_split"].status == "pass" and items["samples"].status == "pass"
    missing = items["train_split[dpo]"]
    assert missing.status == "fail" and "data/splits/train-dpo.jsonl" in missing.detail


def test_assistant_only_loss_needs_generation_markers(chat_project):
    settings_path = chat_project / "models" / "base" / "tokenizer_config.json"
    jinja = chat_project / "models" / "base" / "chat_template.jinja"
    template = (jinja.read_text() if jinja.exists()
                else json.loads(settings_path.read_text())["chat_template"])
    plain = template.replace("{%- generation -%}", "").replace("{%- endgeneration -%}", "")
    if jinja.exists():
        jinja.write_text(plain)
    else:
        settings = json.loads(settings_path.read_text())
        settings["chat_template"] = plain
        settings_path.write_text(json.dumps(settings))
    project = Project.open(chat_project)
    item = checklist.model(project, load_config(project.config_file))
    assert item.status == "fail" and "generation" in item.detail


def test_a_reward_that_cannot_be_built_fails_the_check(chat_project):
    path = chat_project / "training-config.json"
    config = json.loads(path.read_text())
    config["rewards"] = [{"name": "mine", "type": "python", "file": "rewards/mine.py"}]
    path.write_text(json.dumps(config))
    project = Project.open(chat_project)
    [item] = checklist.rewards(project, load_config(project.config_file))
    assert item.status == "fail" and "rewards/mine.py" in item.detail
    (chat_project / "rewards").mkdir()
    (chat_project / "rewards" / "mine.py").write_text("def reward(answer, context):\n"
                                                     "    return float(len(answer) < 80)\n")
    [item] = checklist.rewards(project, load_config(project.config_file))
    assert item.status == "pass" and "mine" in item.detail
