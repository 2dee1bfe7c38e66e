import json
from pathlib import Path

import pytest

from factory.config import json_schema, load_config
from factory.errors import FactoryError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, config):
    path = tmp_path / "training-config.json"
    path.write_text(json.dumps(config))
    return path


def test_template_config_is_valid():
    cfg = load_config(ROOT / "project_template" / "training-config.json")
    assert cfg.training.method == "sft" and cfg.model.max_length == 1024


def test_errors_name_file_field_and_expectation_all_at_once(tmp_path):
    path = write(tmp_path, {"name": "p", "model": {"name": "m", "max_lenght": 10},
                            "training": {"learning_rate": "fast"}})
    with pytest.raises(FactoryError) as err:
        load_config(path)
    e = err.value
    assert e.code == "E_CONFIG" and e.exit_code == 2
    fields = {x["field"]: x for x in e.details["errors"]}
    assert set(fields) == {"model.max_lenght", "training.learning_rate"}
    assert all(x["file"] == str(path) for x in e.details["errors"])
    assert fields["model.max_lenght"]["expected"].startswith(
        "unknown key (did you mean max_length?); allowed here: name, revision, max_length")
    assert "number" in fields["training.learning_rate"]["expected"]


def test_errors_never_echo_values(tmp_path):
    path = write(tmp_path, {"name": "p", "model": {"name": "m", "revision": 12345},
                            "hub_token": "hf_secret_value"})
    with pytest.raises(FactoryError) as err:
        load_config(path)
    assert "hf_secret_value" not in json.dumps(err.value.to_dict())


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "training-config.json"
    path.write_text('{"name": "p",\n "model": }')
    with pytest.raises(FactoryError) as err:
        load_config(path)
    assert err.value.code == "E_CONFIG" and "line 2" in err.value.message


def test_cross_field_rule(tmp_path):
    path = write(tmp_path, {"name": "p", "model": {"name": "m"},
                            "data": {"split": {"val": 0.5, "eval": 0.45}}})
    with pytest.raises(FactoryError) as err:
        load_config(path)
    assert err.value.details["errors"][0]["field"] == "data.split"


def test_committed_json_schema_matches_the_models():
    committed = json.loads((ROOT / "schemas" / "training-config.schema.json").read_text())
    assert committed == json_schema(), "regenerate: python -m factory.config > schemas/training-config.schema.json"


@pytest.mark.parametrize("deploy,expected", [
    ({"outputs": ["adapter", "gguf"]}, "output 'gguf' is made from 'merged'"),
    ({"outputs": ["merged", "ollama"]}, "output 'ollama' is made from 'gguf'"),
    ({"outputs": ["merged", "gguf", "ollama"], "gguf": {"quantizations": ["F16"]},
      "ollama": {"quantization": "Q8_0"}}, "ollama.quantization Q8_0 is not one of"),
    ({"outputs": ["adapter", "hub"]}, "output 'hub' needs hub.repo_id"),
    ({"outputs": ["adapter", "hub"], "hub": {"repo_id": "me/m", "push": ["merged"]}},
     "hub.push names merged, not in outputs"),
    ({"hub": {"repo_id": "not a repo"}}, "is not of the form owner/name"),
    ({"gguf": {"quantizations": ["Q3_XL"]}}, "deploy.gguf.quantizations.0"),
])
def test_deploy_outputs_name_what_they_need(tmp_path, deploy, expected):
    config = json.loads((ROOT / "project_template" / "training-config.json").read_text())
    config["deploy"] = deploy
    with pytest.raises(FactoryError) as caught:
        load_config(write(tmp_path, config))
    assert caught.value.code == "E_CONFIG"
    assert expected in json.dumps(caught.value.details) + caught.value.message
