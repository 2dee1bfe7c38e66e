"""DPO, KTO and GRPO through the real CLI on the tiny model: a few steps each, on the CPU."""
import json
import math

import pytest

from conftest import factory
from factory import demo_data
from factory.demo import write_data

pytestmark = pytest.mark.e2e
RECORDS = 300


def method_records(method: str) -> list[dict]:
    good = demo_data.demo_records(RECORDS)
    bad = demo_data.sabotaged(good)
    out = []
    for i, (g, b) in enumerate(zip(good, bad)):
        prompt, right, wrong = g["messages"][:-1], g["messages"][-1], b["messages"][-1]
        if method == "dpo":
            out.append({"prompt": prompt, "chosen": [right], "rejected": [wrong]})
        elif method == "kto":
            out.append({"prompt": prompt, "completion": [right if i % 2 else wrong],
                        "label": bool(i % 2)})
        else:
            out.append({"prompt": prompt, "answer": right["content"]})
    return out


def configure(project, method: str) -> None:
    path = project / "training-config.json"
    config = json.loads(path.read_text())
    config["training"].update(method=method, max_steps=4, batch_size=4, save_steps=2,
                              logging_steps=1, learning_rate=1e-3)
    if method == "grpo":
        config["training"]["grpo"] = {"num_generations": 4, "max_completion_length": 24}
        config["rewards"] = config.get("rewards", []) + [
            {"name": "answer", "type": "reference_match", "weight": 1.0}]
        config["rewards"][0]["weight"] = 0.5  # the demo's one_call format reward
    path.write_text(json.dumps(config, indent=2))


@pytest.mark.parametrize("method", ["dpo", "kto", "grpo"])
def test_method_trains_a_loadable_adapter(demo_project, method):
    (demo_project / "data" / "raw" / "demo.jsonl").unlink()
    write_data(demo_project, method_records(method), f"{method}.jsonl")
    configure(demo_project, method)
    for gate in ("baseline", "format", "finetune"):
        rc, out = factory("-C", str(demo_project), "run", gate)
        assert rc == 0, (gate, out)

    stats = json.loads((demo_project / "metrics" / "training-stats.json").read_text())
    assert stats["method"] == method and stats["total_steps"] == 4
    assert all(math.isfinite(loss) for _, loss in stats["loss_curve"])
    adapter = demo_project / "models" / "checkpoints" / "lora"
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert list(demo_project.glob("models/runs/*/checkpoint-2/optimizer.pt"))
    log = (demo_project / ".factory" / "logs" / "finetune.log").read_text()
    assert f"method: {method}" in log
    if method == "grpo":
        assert "rewards: one_call x0.5, answer x1.0" in log
        assert set(stats["reward_means"]) == {"one_call", "answer"}
        assert all(0.0 <= v <= 1.0 for v in stats["reward_means"].values())

    # Loadable: the evaluate gate's own loader, in a fresh process, on the saved adapter.
    rc, out = factory("-C", str(demo_project), "run", "evaluate")
    assert rc in (0, 3), out
    verdict = json.loads((demo_project / "metrics" / "verdict.json").read_text())
    assert verdict["checkpoint_hash"] and verdict["metrics"]["loss"]["n"] > 0
