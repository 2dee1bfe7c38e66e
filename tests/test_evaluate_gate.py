"""The evaluate gate's judgement, on constructed scores (fast) and on the real tiny model (e2e)."""
import json
import shutil

import pytest

from agents import eval_scoring, evaluate
from conftest import factory
from factory import atomic, pipeline, registry, splits
from factory.errors import FactoryError
from factory.hashing import hash_path
from factory.normalise import conversation_key

N = 40


def eval_records():
    records = []
    for i in range(N):
        messages = [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
        records.append({"id": f"id{i:02d}", "key": conversation_key(messages), "source": "t",
                        "format": "messages", "messages": messages, "meta": {}})
    return records


def scores(right: int, loss: float) -> list[dict]:
    return [{"id": f"id{i:02d}", "exact_match": float(i < right), "normalized_match": float(
        i < right), "loss": loss, "prediction": "p", "reference": f"a{i}"} for i in range(N)]


@pytest.fixture
def scored(chat_project):
    """A project whose eval split is frozen and whose baseline and candidate are 'scored'."""
    project = chat_project
    config = json.loads((project / "training-config.json").read_text())
    config["eval"].update(metrics=["loss", "exact_match", "normalized_match"],
                          bootstrap_resamples=2000)
    (project / "training-config.json").write_text(json.dumps(config))
    ctx = pipeline.open_context(project)
    splits.freeze(ctx.project, eval_records())
    adapter = project / "models" / "checkpoints" / "lora"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    atomic.write_json(project / "metrics" / "baseline.json",
                      {"scoring": eval_scoring.fingerprint(ctx)})
    atomic.write_jsonl(project / "metrics" / "baseline-examples.jsonl", scores(4, 3.0))
    atomic.write_jsonl(project / "metrics" / "eval-examples.jsonl", scores(30, 1.0))
    return ctx


def promote(ctx, right: int, **overrides) -> str:
    """Record a promotion whose stored eval scores got `right` examples right."""
    pid = f"v1-{'c' * 8}"
    folder = ctx.project.deployed_dir / pid
    folder.mkdir(parents=True)
    atomic.write_jsonl(folder / registry.EXAMPLES, scores(right, 0.5))
    promo = {"id": pid, "checkpoint_hash": "c" * 64, "model_identity": None,
             "scoring": eval_scoring.fingerprint(ctx),
             "eval_split_hash": hash_path(ctx.project.split_file("eval")), **overrides}
    registry.write(ctx.project, {"schema": 1, "current": pid, "promotions": [promo]})
    return pid


def test_clearly_better_candidate_passes_and_records_what_it_judged(scored):
    verdict = evaluate.judge(scored, evaluate.promoted_model(scored))
    assert verdict["passed"], verdict["reason"]
    assert verdict["promoted"] is None
    em = verdict["metrics"]["exact_match"]
    assert em["improvement"] == pytest.approx(26 / 40) and em["ci_low"] > 0.4
    assert em["bayes"]["p_candidate_better"] > 0.99 and em["p_sign"] < 1e-6
    assert verdict["checkpoint_hash"] == hash_path(scored.project.adapter_dir)
    assert verdict["eval_split_hash"] == hash_path(scored.project.split_file("eval"))


def test_worse_than_the_promoted_model_fails_even_if_it_beats_the_base(scored):
    pid = promote(scored, right=36)
    champion = evaluate.promoted_model(scored)
    assert champion["examples"].endswith(f"{pid}/eval-examples.jsonl"), "stored scores reused"
    verdict = evaluate.judge(scored, champion)
    assert not verdict["passed"]
    assert f"but it is worse than promoted {pid}" in verdict["reason"]
    assert verdict["promoted"]["metrics"]["exact_match"]["improvement"] == pytest.approx(-6 / 40)


def test_a_tie_with_the_promoted_model_passes_unless_better_is_required(scored):
    pid = promote(scored, right=30)
    verdict = evaluate.judge(scored, evaluate.promoted_model(scored))
    assert verdict["passed"] and f"not worse than promoted {pid}" in verdict["reason"]
    config = json.loads((scored.project.config_file).read_text())
    config["eval"]["vs_promoted"] = "better"
    scored.project.config_file.write_text(json.dumps(config))
    ctx = pipeline.open_context(scored.project.root)
    verdict = evaluate.judge(ctx, evaluate.promoted_model(ctx))
    assert not verdict["passed"] and "does not beat" in verdict["reason"]


def test_promoted_scores_from_other_settings_are_rescored_or_skipped(scored):
    pid = promote(scored, right=36, scoring="other settings")
    champion = evaluate.promoted_model(scored)
    assert "skipped" in champion, "no output to rescore"
    assert evaluate.judge(scored, champion)["passed"]
    (scored.project.deployed_dir / pid / "merged").mkdir()
    champion = evaluate.promoted_model(scored)
    assert champion["checkpoint"] == f"models/deployed/{pid}/merged"


def test_the_candidate_is_never_held_to_its_own_promotion(scored):
    promote(scored, right=36, checkpoint_hash=hash_path(scored.project.adapter_dir))
    assert evaluate.promoted_model(scored) is None


def test_leaked_eval_prompt_in_train_is_refused_by_content(scored):
    project = scored.project
    leaked = {"messages": [{"role": "user", "content": "q7"},
                           {"role": "assistant", "content": "another answer"}]}
    atomic.write_jsonl(project.split_file("train"), [leaked])  # no id, no key: content decides
    frozen = splits.check_frozen(project)
    with pytest.raises(FactoryError) as caught:
        evaluate.check_no_leakage(scored, set(frozen["ids"]), evaluate.eval_keys(scored))
    assert caught.value.code == "E_LEAKAGE" and "train.jsonl" in caught.value.message


def test_a_baseline_scored_with_other_settings_is_refused(scored):
    config = json.loads(scored.project.config_file.read_text())
    config["eval"]["max_new_tokens"] = 7
    scored.project.config_file.write_text(json.dumps(config))
    with pytest.raises(FactoryError) as caught:
        evaluate.check_baseline_current(pipeline.open_context(scored.project.root))
    assert caught.value.code == "E_VERDICT_STALE"


@pytest.mark.e2e
def test_the_base_model_renamed_as_candidate_does_not_pass(demo_project):
    for gate in ("baseline", "format"):
        rc, out = factory("-C", str(demo_project), "run", gate)
        assert rc == 0, out
    base = demo_project / "models" / "base"
    shutil.copytree(base, demo_project / "models" / "checkpoints" / "lora")
    # A promoted model (the base again, as merged weights) without stored scores: the gate
    # must score it in the same fresh process as the candidate.
    ctx = pipeline.open_context(demo_project)
    pid = promote(ctx, right=0, scoring="scored elsewhere")
    shutil.copytree(base, demo_project / "models" / "deployed" / pid / "merged")

    outcome = evaluate.run(ctx)
    assert not outcome.passed and outcome.error.code == "E_NOT_BETTER"
    verdict = json.loads((demo_project / "metrics" / "verdict.json").read_text())
    assert "below min_delta" in verdict["reason"]
    for name, c in verdict["metrics"].items():
        if c["n"]:
            assert c["improvement"] == 0 and c["wins"] == c["losses"] == 0, name
    promoted = verdict["promoted"]
    assert promoted["id"] == pid and promoted["checkpoint"].endswith("/merged")
    assert promoted["metrics"]["exact_match"]["improvement"] == 0

    def predictions(name):
        lines = (demo_project / "metrics" / name).read_text().splitlines()
        return {r["id"]: r["prediction"] for r in map(json.loads, lines)}
    assert predictions("eval-examples.jsonl") == predictions("baseline-examples.jsonl")
    assert predictions("promoted-examples.jsonl") == predictions("baseline-examples.jsonl")
    report = (demo_project / "reports" / "eval.md").read_text()
    assert report.startswith("# Evaluation: FAILED") and f"promoted {pid}" in report
    assert (demo_project / "reports" / "eval-deltas.png").read_bytes()[:4] == b"\x89PNG"
