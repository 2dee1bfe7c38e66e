"""The CUDA paths: QLoRA (4-bit) and the Unsloth backend. Marked gpu: never run in CI; run them on
a GPU machine with `pytest -m gpu` after `pip install -e .[train,gpu]`."""
import importlib.util
import json

import pytest

from conftest import factory

pytestmark = [pytest.mark.gpu, pytest.mark.e2e]


@pytest.fixture(autouse=True)
def _needs_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")


def configure(project, **lora_and_training):
    path = project / "training-config.json"
    config = json.loads(path.read_text())
    config["lora"]["load_in_4bit"] = lora_and_training.pop("load_in_4bit", False)
    config["training"].update(max_steps=4, save_steps=2, logging_steps=1, **lora_and_training)
    path.write_text(json.dumps(config, indent=2))


def train(project) -> tuple[dict, str]:
    for gate in ("baseline", "format", "finetune"):
        rc, out = factory("-C", str(project), "run", gate)
        assert rc == 0, (gate, out)
    stats = json.loads((project / "metrics" / "training-stats.json").read_text())
    return stats, (project / ".factory" / "logs" / "finetune.log").read_text()


def test_qlora_with_transformers_trains_a_loadable_adapter(demo_project):
    pytest.importorskip("bitsandbytes")
    configure(demo_project, load_in_4bit=True, backend="transformers")
    stats, log = train(demo_project)
    assert "device: cuda" in log and "quantization: 4-bit NF4 (QLoRA)" in log
    assert stats["quantization"] == "4bit" and stats["backend"] == "transformers"
    rc, out = factory("-C", str(demo_project), "run", "evaluate")
    assert rc in (0, 3), out


def test_unsloth_is_picked_when_it_imports(demo_project):
    pytest.importorskip("unsloth")
    configure(demo_project, backend="auto")
    stats, log = train(demo_project)
    assert "backend: unsloth" in log and stats["backend"] == "unsloth"
    assert (demo_project / "models" / "checkpoints" / "lora" / "adapter_config.json").exists()


def test_backend_unsloth_without_the_package_is_refused(demo_project):
    if importlib.util.find_spec("unsloth"):
        pytest.skip("unsloth is installed here")
    configure(demo_project, backend="unsloth")
    for gate in ("baseline", "format"):
        assert factory("-C", str(demo_project), "run", gate)[0] == 0
    rc, out = factory("-C", str(demo_project), "run", "finetune")
    assert rc == 3 and out["error"]["code"] == "E_BACKEND"
