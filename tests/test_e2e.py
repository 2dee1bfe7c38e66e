"""End to end: the real `factory` CLI, the real TRL/PEFT/transformers stack, the tiny local model."""
import json

import pytest

from conftest import factory, kill_after_checkpoint
from serve_client import ask, running
from factory import demo_data, funcgemma
from factory.demo import write_data

pytestmark = pytest.mark.e2e
FAKE_TOKEN = "hf_fakeTokenThatMustNeverBeWritten0123"


def read_json(path):
    return json.loads(path.read_text())


def test_demo_survives_a_kill_mid_finetune_and_earns_its_deploy(demo_project):
    # 1. Run every gate; kill the whole process group once training has checkpointed.
    kill_after_checkpoint(demo_project, "run", "--all")

    state = read_json(demo_project / ".factory" / "state.json")
    assert state["state"] == "formatted", "a killed finetune must not be claimed done"
    rc, out = factory("-C", str(demo_project), "status")
    assert rc == 0 and out["result"]["lock"] is None
    assert out["result"]["training"]["interrupted"] is True
    assert out["next"]["command"] == "factory run finetune"

    # 2. The next run continues from the last checkpoint and goes all the way.
    rc, out = factory("-C", str(demo_project), "run", "--all", env={"HF_TOKEN": FAKE_TOKEN})
    assert rc == 0, out
    assert out["result"]["state"] == "deployed"
    assert [g["gate"] for g in out["result"]["gates"]] == ["finetune", "evaluate", "deploy"]

    stats = read_json(demo_project / "metrics" / "training-stats.json")
    assert stats["resumed_from"].startswith("checkpoint-")
    assert stats["final_loss"] < stats["first_loss"] / 5

    verdict = read_json(demo_project / "metrics" / "verdict.json")
    em = verdict["metrics"]["exact_match"]
    assert verdict["passed"] and em["improvement"] >= 0.3 and em["ci_low"] > 0
    assert verdict["min_delta"] == 0.05, "the demo passes under the default rule, not a lowered one"
    assert verdict["promoted"] is None, "nothing was promoted before"
    assert em["bayes"]["p_candidate_better"] > 0.99 and em["p_sign"] < 1e-3
    calls = verdict["metrics"]["tool_args_exact"]
    assert calls["n"] == em["n"] and calls["candidate"] >= 0.5
    assert verdict["metrics"]["reward:one_call"]["candidate"] > 0.9, "a reward used as a metric"
    assert (demo_project / "reports" / "eval.md").read_text().startswith("# Evaluation: PASSED")
    assert (demo_project / "reports" / "eval-deltas.png").read_bytes()[:4] == b"\x89PNG"
    examples = (demo_project / "metrics" / "eval-examples.jsonl").read_text().splitlines()
    first = json.loads(examples[0])
    assert {"prediction", "reference", "exact_match", "loss", "reward:one_call"} <= set(first)

    adapter = demo_project / "models" / "checkpoints" / "lora"
    assert (adapter / "adapter_config.json").exists()
    assert (adapter / "adapter_model.safetensors").exists()
    registry = read_json(demo_project / ".factory" / "registry.json")
    current = registry["current"]
    assert registry["promotions"][-1]["checkpoint_hash"] == verdict["checkpoint_hash"]
    deployed = demo_project / "models" / "deployed" / current
    assert (deployed / "adapter" / "adapter_model.safetensors").exists()
    assert (deployed / "merged" / "model.safetensors").exists()
    assert read_json(deployed / "deploy-manifest.json")["parity_probes"] == 5
    assert (deployed / "eval-examples.jsonl").read_text().splitlines() == examples
    assert registry["promotions"][-1]["scoring"] == verdict["scoring"]
    manifest = read_json(deployed / "deploy-manifest.json")
    assert [g["type"] for g in manifest["gguf"]] == ["F16", "Q8_0"]
    for gguf in manifest["gguf"]:
        assert (deployed / "gguf" / gguf["file"]).read_bytes()[:4] == b"GGUF"
        assert gguf["agreement"] >= gguf["min_agreement"]
    assert manifest["gguf"][0]["agreement"] == 1.0, "F16 answers exactly as the merged model"
    modelfile = (deployed / "ollama" / "Modelfile").read_text().splitlines()
    assert "FROM ../gguf/demo-F16.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert manifest["ollama"]["template_checked_on"] == 8
    card = (deployed / "README.md").read_text()
    assert card.startswith("---\nbase_model: \"models/base\"") and "## Evaluation" in card
    assert "| exact_match (primary) |" in card and "Verdict: **PASSED**" in card
    leaked = [p for p in demo_project.rglob("*")
              if p.is_file() and FAKE_TOKEN.encode() in p.read_bytes()]
    assert leaked == [], "the token from the environment was written to a file"
    rc, out = factory("-C", str(demo_project), "status")
    assert out["result"]["eval"]["passed"] and out["result"]["eval"]["plot"] == \
        "reports/eval-deltas.png"
    assert [g["status"] for g in out["result"]["gates"]] == ["passed"] * 5, \
        "deploying the candidate must not make its own evaluation stale"
    for gate in ("baseline", "format", "finetune", "evaluate", "deploy"):
        assert (demo_project / "scripts" / f"{gate}.py").exists()
        assert (demo_project / "scripts" / f"{gate}.json").exists()
    for name in ("baseline.json", "baseline-examples.jsonl", "eval.json", "eval-examples.jsonl"):
        assert (demo_project / "metrics" / name).exists()
    events = [json.loads(line) for line in
              (demo_project / ".factory" / "events.jsonl").read_text().splitlines()]
    assert [e["to"] for e in events] == ["baselined", "formatted", "finetuned", "evaluated",
                                         "deployed"]

    # 3. The promoted model answers an eval prompt over an OpenAI-style endpoint, with its
    #    FunctionGemma call returned as tool_calls.
    record = json.loads((demo_project / "data" / "splits" / "eval.jsonl").read_text()
                        .splitlines()[0])
    with running(project=demo_project) as server:
        body = ask(server.base_url, record["messages"][:-1], tools=record.get("tools"))
    assert record["id"] == first["id"] and first["exact_match"] == 1.0
    _, scored_calls = funcgemma.text_to_openai(first["prediction"])
    message = body["choices"][0]["message"]
    assert body["choices"][0]["finish_reason"] == "tool_calls", body
    assert message["content"] is None
    assert [c["function"] for c in message["tool_calls"]] == \
        [c["function"] for c in scored_calls], "the endpoint answers as evaluate scored"

    # 4. A checkpoint changed after its verdict is refused at deploy.
    with open(adapter / "adapter_model.safetensors", "ab") as fh:
        fh.write(b"\0")
    rc, out = factory("-C", str(demo_project), "run", "deploy")
    assert rc == 3 and out["error"]["code"] == "E_VERDICT_STALE"
    assert "checkpoint" in out["error"]["details"]["changed"]
    rc, out = factory("-C", str(demo_project), "status")
    finetune = next(g for g in out["result"]["gates"] if g["name"] == "finetune")
    assert finetune["status"] == "stale" and finetune["changed"] == ["out:adapter"]


def test_sabotaged_training_data_fails_evaluate_and_deploy_is_refused(demo_project):
    rc, out = factory("-C", str(demo_project), "run", "baseline")
    assert rc == 0, out
    # The eval split is frozen with correct answers; the training data now teaches nothing.
    (demo_project / "data" / "raw" / "demo.jsonl").unlink()
    write_data(demo_project, demo_data.sabotaged(demo_data.demo_records(600)), "shuffled.jsonl")

    rc, out = factory("-C", str(demo_project), "run", "--all")
    assert rc == 3 and out["error"]["code"] == "E_NOT_BETTER", out
    completed = [g["gate"] for g in out["error"]["details"]["completed"]]
    assert completed == ["format", "finetune"]
    verdict = read_json(demo_project / "metrics" / "verdict.json")
    assert verdict["passed"] is False
    assert read_json(demo_project / ".factory" / "state.json")["state"] == "evaluate_failed"

    rc, out = factory("-C", str(demo_project), "run", "deploy")
    assert rc == 3 and out["error"]["code"] == "E_NOT_BETTER"
    assert not (demo_project / "models" / "deployed").exists()
    rc, out = factory("-C", str(demo_project), "next")
    assert out["result"]["command"] is None and "E_NOT_BETTER" in out["result"]["reason"]
