"""DPO, KTO and GRPO through the real CLI on the tiny model: a few steps each, on the CPU."""
import json
import math

import pytest

from conftest import factory, kill_after_checkpoint
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
    assert list(demo_project.glob("models/runs/*/stage-1-*/checkpoint-2/optimizer.pt"))
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


def lora_b_norm(adapter) -> float:
    from safetensors.torch import load_file

    weights = load_file(str(adapter / "adapter_model.safetensors"))
    return sum(float(t.float().norm()) for name, t in weights.items() if "lora_B" in name)


def test_a_chain_trains_each_stage_on_from_the_last(demo_project):
    """sft -> dpo -> grpo in one finetune run, as the seeds' three phases: each stage starts from
    the adapter the one before it left, and an interrupted chain keeps its finished stages."""
    for method in ("dpo", "grpo"):
        write_data(demo_project, method_records(method), f"{method}.jsonl")
    configure(demo_project, "grpo")
    path = demo_project / "training-config.json"
    config = json.loads(path.read_text())
    del config["training"]["method"], config["training"]["max_steps"]
    config["training"]["stages"] = [{"method": "sft", "max_steps": 6},
                                    {"method": "dpo", "max_steps": 2, "learning_rate": 1e-5},
                                    {"method": "grpo", "max_steps": 2, "learning_rate": 1e-5}]
    path.write_text(json.dumps(config, indent=2))
    for gate in ("baseline", "format", "finetune"):
        rc, out = factory("-C", str(demo_project), "run", gate)
        assert rc == 0, (gate, out)

    splits = demo_project / "data" / "splits"
    assert {p.name for p in splits.glob("train*.jsonl")} == {
        "train.jsonl", "train-dpo.jsonl", "train-grpo.jsonl"}
    assert set(json.loads(splits.joinpath("train-dpo.jsonl").open().readline())) >= {
        "prompt", "chosen", "rejected"}
    stats = json.loads((demo_project / "metrics" / "training-stats.json").read_text())
    assert stats["method"] == "sft+dpo+grpo" and stats["total_steps"] == 10
    assert [s["total_steps"] for s in stats["stages"]] == [6, 2, 2]
    # DPO's first loss is ln 2 exactly when the policy equals its reference: TRL's frozen copy
    # of the SFT adapter, which the DPO stage trains on from.
    assert abs(stats["stages"][1]["first_loss"] - math.log(2)) < 1e-3
    runs = demo_project / "models" / "runs"
    sft, dpo, grpo = (next(runs.glob(f"*/stage-{n}-{m}/adapter"))
                      for n, m in ((1, "sft"), (2, "dpo"), (3, "grpo")))
    # A low learning rate moves the adapter a little; a fresh one would start from lora_B = 0.
    assert lora_b_norm(sft) > 0
    assert abs(lora_b_norm(dpo) - lora_b_norm(sft)) < 0.2 * lora_b_norm(sft)
    assert not (dpo / "ref").exists(), "only the trained adapter is saved, not TRL's reference"
    final = demo_project / "models" / "checkpoints" / "lora"
    assert (final / "adapter_model.safetensors").read_bytes() == \
        (grpo / "adapter_model.safetensors").read_bytes()
    assert (demo_project / "reports" / "training.png").read_bytes()[:4] == b"\x89PNG"

    # Resume after losing the last stage: the first two are kept, not trained again.
    import shutil
    shutil.rmtree(grpo.parent)
    rc, out = factory("-C", str(demo_project), "run", "finetune", "--force")
    assert rc == 0, out
    log = (demo_project / ".factory" / "logs" / "finetune.log").read_text()
    assert log.count("finished by an earlier run") == 2 and "stage 3/3: grpo" in log


def test_grpo_killed_mid_run_resumes_from_its_checkpoint(demo_project):
    (demo_project / "data" / "raw" / "demo.jsonl").unlink()
    write_data(demo_project, method_records("grpo"), "grpo.jsonl")
    configure(demo_project, "grpo")
    path = demo_project / "training-config.json"
    config = json.loads(path.read_text())
    # Checkpoints every 2 steps and 10 steps in all: the kill lands with steps still to run,
    # even if the first checkpoint is seen late.
    config["training"]["max_steps"] = 10
    path.write_text(json.dumps(config, indent=2))
    for gate in ("baseline", "format"):
        assert factory("-C", str(demo_project), "run", gate)[0] == 0

    kill_after_checkpoint(demo_project, "run", "finetune")
    assert not (demo_project / "metrics" / "training-stats.json").exists()

    rc, out = factory("-C", str(demo_project), "run", "finetune")
    assert rc == 0, out
    stats = json.loads((demo_project / "metrics" / "training-stats.json").read_text())
    assert stats["resumed_from"].startswith("checkpoint-") and stats["total_steps"] == 10
    log = (demo_project / ".factory" / "logs" / "finetune.log").read_text()
    assert f"resuming from {stats['resumed_from']}" in log
    # The history before the kill comes back with the checkpoint: one curve for the whole run.
    assert [step for step, _ in stats["loss_curve"]] == list(range(1, 11))
    assert set(stats["reward_means"]) == {"one_call", "answer"}
