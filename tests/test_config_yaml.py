"""factory.yaml: the same configuration as training-config.json, one schema for both."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import factory
from factory.config import load_config
from factory.errors import FactoryError

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "training-config.schema.json").read_text())


def to_yaml(project: Path) -> Path:
    """The project's training-config.json rewritten as factory.yaml (and the JSON removed)."""
    config = json.loads((project / "training-config.json").read_text())
    config.pop("$schema", None)
    path = project / "factory.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    (project / "training-config.json").unlink()
    return path


def test_the_demo_config_reads_the_same_in_both_spellings(demo_template, tmp_path):
    json_path = demo_template / "training-config.json"
    project = tmp_path / "p"
    shutil.copytree(demo_template, project)
    yaml_path = to_yaml(project)
    assert load_config(yaml_path) == load_config(json_path)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for data in (json.loads(json_path.read_text()), yaml.safe_load(yaml_path.read_text())):
        data.pop("$schema", None)
        validator.validate(data)


def test_a_bad_key_names_the_file_the_path_the_line_and_the_allowed_keys(tmp_path):
    path = tmp_path / "factory.yaml"
    path.write_text("name: p\nmodel:\n  name: models/base\n  max_lenght: 100\n")
    with pytest.raises(FactoryError) as caught:
        load_config(path)
    error = caught.value
    assert error.code == "E_CONFIG" and str(path) in error.message
    (problem,) = error.details["errors"]
    assert problem["field"] == "model.max_lenght" and problem["line"] == 4
    assert "did you mean max_length?" in problem["expected"]
    assert problem["allowed"] == ["name", "revision", "max_length", "dtype",
                                  "trust_remote_code"]
    # The same mistake in JSON: the same field path and allowed keys (JSON has no lines here).
    json_path = tmp_path / "training-config.json"
    json_path.write_text(json.dumps({"name": "p", "model": {"name": "m", "max_lenght": 1}}))
    with pytest.raises(FactoryError) as caught:
        load_config(json_path)
    (problem,) = caught.value.details["errors"]
    assert problem["allowed"][2] == "max_length" and "line" not in problem


def test_a_bad_key_in_a_list_item_and_a_bad_value_list_what_is_allowed(tmp_path):
    path = tmp_path / "factory.yaml"
    path.write_text("name: p\nmodel: {name: m}\nrewards:\n  - name: r\n    type: json_valid\n"
                    "    wieght: 2\ndistributed:\n  strategy: mpi\n")
    with pytest.raises(FactoryError) as caught:
        load_config(path)
    problems = {p["field"]: p for p in caught.value.details["errors"]}
    assert problems["rewards.0.wieght"]["line"] == 6
    assert "did you mean weight?" in problems["rewards.0.wieght"]["expected"]
    assert "'ddp'" in problems["distributed.strategy"]["expected"]
    assert problems["distributed.strategy"]["line"] == 8


def test_yaml_booleans_are_only_true_and_false(tmp_path):
    path = tmp_path / "factory.yaml"
    path.write_text("name: p\nmodel: {name: m}\ndistributed:\n  strategy: ddp\n"
                    "  mixed_precision: no\nlora:\n  load_in_4bit: false\n")
    config = load_config(path)
    assert config.distributed.mixed_precision == "no" and config.lora.load_in_4bit is False


@pytest.mark.parametrize("text,message", [
    ("name: p\nmodel: {name: m}\nname: q\n", "name is given twice (lines 1 and 3)"),
    ("name: [p\n", "not valid YAML (line 2"),
    ("- name\n", "the top level must be a mapping"),
])
def test_unreadable_yaml_says_where(tmp_path, text, message):
    path = tmp_path / "factory.yaml"
    path.write_text(text)
    with pytest.raises(FactoryError) as caught:
        load_config(path)
    assert caught.value.code == "E_CONFIG" and message in caught.value.message


def test_a_yaml_project_runs_from_the_cli(demo_project):
    to_yaml(demo_project)
    rc, out = factory("-C", str(demo_project), "run", "baseline")
    assert rc == 0, out
    rc, out = factory("-C", str(demo_project), "status")
    assert rc == 0 and out["next"]["command"] == "factory run format"

    # Both spellings at once is ambiguous, and refused.
    shutil.copy(demo_project / "factory.yaml", demo_project / "factory.yml")
    rc, out = factory("-C", str(demo_project), "status")
    assert rc == 2 and out["error"]["code"] == "E_CONFIG"
    assert "factory.yaml, factory.yml" in out["error"]["message"]
    (demo_project / "factory.yml").unlink()

    # profile --apply never rewrites YAML (its comments would go): it says what to set.
    before = (demo_project / "factory.yaml").read_text()
    rc, out = factory("-C", str(demo_project), "profile", "--apply", "--profile", "gpu-24gb")
    assert rc == 2 and out["error"]["code"] == "E_CONFIG_EDIT"
    assert "training.batch_size" in out["error"]["hint"]
    assert (demo_project / "factory.yaml").read_text() == before


def test_init_writes_yaml_on_request(tmp_path):
    rc, out = factory("init", str(tmp_path / "y"), "--yaml")
    assert rc == 0 and out["result"]["config"].endswith("factory.yaml")
    assert not (tmp_path / "y" / "training-config.json").exists()
    assert load_config(tmp_path / "y" / "factory.yaml").name == "y"
    rc, out = factory("-C", str(tmp_path / "y"), "next")
    assert rc == 0
