"""Per-environment evaluation: the `env` label from raw record to verdict, the per-environment
statistics, the dominance check, and a gate that requires dominance (e2e on the tiny model)."""
import json

import pytest

from agents import baseline, eval_envs, eval_scoring, evaluate
from conftest import factory
from factory import atomic, demo_data, envs, pipeline, splits, stats
from factory.normalise import conversation_key
from factory.records import ReadOptions, Tally, plan, read

# ------------------------------------------------------------------ the label through the data


def read_records(tmp_path, rows):
    raw = tmp_path / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tally, options = Tally(), ReadOptions()
    return list(read(plan(raw, tmp_path, options, lambda p: p.resolve(), tally), tmp_path,
                     options, tally)), tally


def chat(i: int, **extra) -> dict:
    return {"messages": [{"role": "user", "content": f"q{i}"},
                         {"role": "assistant", "content": f"a{i}"}], **extra}


def test_env_is_read_from_env_or_task_and_never_changes_id_or_key(tmp_path):
    plain, _ = read_records(tmp_path / "plain", [chat(0), chat(1), chat(2), chat(3)])
    labelled, tally = read_records(tmp_path / "labelled", [
        chat(0, env="math"), chat(1, task="code"), chat(2, env="math", task="code"),
        chat(3, task={"id": 7}),  # not a name: plain metadata, as before
    ])
    assert tally.bad == 0, tally.problems
    assert [(e["id"], e["key"]) for e in labelled] == [(e["id"], e["key"]) for e in plain]
    assert [e.get("env") for e in labelled] == ["math", "code", "math", None]
    assert all("env" not in e for e in plain), "unlabelled examples stay exactly as they were"
    assert labelled[0]["meta"] == {"env": "math"}, "the raw field is still metadata"


def test_a_non_string_env_is_refused_with_its_field(tmp_path):
    _, tally = read_records(tmp_path, [chat(0, env=3)])
    assert tally.bad == 1 and tally.problems[0].field == "env"


def test_split_frozen_before_envs_were_carried_still_names_them():
    # Such rows hold the raw field only in meta.
    assert envs.of_row({"id": "x", "meta": {"task": "code"}}) == "code"
    assert envs.of_row({"id": "x", "env": "math", "meta": {"env": "math"}}) == "math"
    assert envs.name(envs.of_row({"id": "x", "meta": {}})) == envs.DEFAULT


def test_labelling_raw_data_moves_no_record_and_labels_the_frozen_split(chat_project):
    ctx = pipeline.open_context(chat_project)
    baseline.freeze_eval_split(ctx)
    before = splits.frozen(ctx.project)
    unlabelled = ctx.project.split_file("eval").read_bytes()
    raw = chat_project / "data" / "raw" / "chat.jsonl"
    rows = [json.loads(line) for line in raw.read_text().splitlines()]
    raw.write_text("".join(json.dumps({**r, "env": f"e{i % 2}"}) + "\n"
                           for i, r in enumerate(rows)))
    baseline.freeze_eval_split(ctx)
    after = splits.frozen(ctx.project)
    assert (after["ids"], after["keys"]) == (before["ids"], before["keys"])
    frozen = [json.loads(line) for line in ctx.project.split_file("eval").open()]
    assert {r["env"] for r in frozen} == {"e0", "e1"}
    # Without labels the split file is byte for byte what it was before envs existed.
    assert all(b'"env"' not in line for line in unlabelled.splitlines())


# ------------------------------------------------------------- significance and dominance


def comparison(base: list[float], cand: list[float], metric: str = "exact_match") -> dict:
    return stats.compare(metric, base, cand, confidence=0.95, resamples=2000, seed=1).to_dict()


def test_pass_fail_metrics_are_judged_by_the_beta_interval_of_the_difference():
    # Two losses out of two: the bootstrap collapses to [-1, -1]; the posterior does not.
    c = comparison([1.0, 1.0], [0.0, 0.0])
    assert c["ci_high"] == -1.0
    interval, basis = stats.difference_interval(c)
    assert basis == "beta" and interval[0] < 0 < interval[1]
    assert stats.significance(c) == stats.UNCLEAR
    assert stats.significance(comparison([1.0] * 12, [0.0] * 12)) == stats.WORSE
    assert stats.significance(comparison([0.0] * 12, [1.0] * 12)) == stats.BETTER


def test_other_metrics_use_the_bootstrap_interval_oriented_so_positive_is_better():
    c = comparison([3.0, 3.1, 2.9, 3.0, 3.2, 3.1], [1.0, 1.1, 0.9, 1.2, 1.0, 1.1], "loss")
    assert stats.difference_interval(c) == ([c["ci_low"], c["ci_high"]], "bootstrap")
    assert stats.significance(c) == stats.BETTER, "a lower loss is better"
    assert stats.significance({"n": 0, "applicable": False}) == stats.UNCLEAR


@pytest.mark.parametrize("outcomes, dominates, worse", [
    ({"a": "better", "b": "unclear"}, True, []),
    ({"a": "better", "b": "worse", "c": "better"}, False, ["b"]),
    ({"a": "unclear", "b": "unclear"}, False, []),
])
def test_dominance_needs_no_worse_environment_and_one_better(outcomes, dominates, worse):
    result = stats.dominance(outcomes)
    assert result["dominates"] is dominates and result["worse"] == worse
    assert sorted(result["better"] + result["worse"] + result["unclear"]) == sorted(outcomes)


def rows(right: set[int], n: int) -> dict[str, dict]:
    return {f"id{i:02d}": {"id": f"id{i:02d}", "exact_match": float(i in right)}
            for i in range(n)}


def judged(base_right: set[int], cand_right: set[int], n: int = 40, split: int = 30):
    """Per-env comparisons of crafted scores: ids below `split` are env a, the rest env b."""
    env_of = {f"id{i:02d}": "a" if i < split else "b" for i in range(n)}

    def compare_all(b, c):
        ids = sorted(b)
        return {"exact_match": stats.compare(
            "exact_match", [b[i]["exact_match"] for i in ids],
            [c[i]["exact_match"] for i in ids], confidence=0.95, resamples=2000,
            seed=1).to_dict()}

    base, cand = rows(base_right, n), rows(cand_right, n)
    per_env = eval_envs.per_env(base, cand, env_of, compare_all, "exact_match",
                                compare_all(base, cand))
    return per_env, eval_envs.dominance(per_env, "exact_match", required=True)


def test_per_env_statistics_and_a_dominating_candidate():
    per_env, dom = judged(base_right=set(range(30, 40)), cand_right=set(range(40)))
    assert {env: e["n"] for env, e in per_env.items()} == {"a": 30, "b": 10}
    a, b = per_env["a"]["metrics"]["exact_match"], per_env["b"]["metrics"]["exact_match"]
    assert (a["baseline"], a["candidate"], a["improvement"]) == (0.0, 1.0, 1.0)
    assert (b["baseline"], b["candidate"], b["improvement"]) == (1.0, 1.0, 0.0)
    assert a["bayes"]["candidate"][0] == pytest.approx(31 / 32), "Beta(1 + 30, 1 + 0) mean"
    assert per_env["a"]["interval"] == "beta" and per_env["a"]["outcome"] == "better"
    assert dom == {"metric": "exact_match", "required": True, "dominates": True,
                   "better": ["a"], "worse": [], "unclear": ["b"]}


def test_one_significantly_worse_environment_breaks_dominance_and_is_named():
    per_env, dom = judged(base_right=set(range(30, 40)), cand_right=set(range(30)))
    assert not dom["dominates"] and dom["worse"] == ["b"] and dom["better"] == ["a"]
    why = eval_envs.shortfall(dom, per_env)
    assert "significantly worse in b (1 → 0," in why and "n=10" in why


def test_all_unclear_does_not_dominate():
    per_env, dom = judged(base_right={0, 1, 30}, cand_right={0, 1, 2, 31})
    assert dom["unclear"] == ["a", "b"] and not dom["dominates"]
    assert "better in none of 2" in eval_envs.shortfall(dom, per_env)


def test_one_implicit_environment_reuses_the_overall_figures():
    overall = {"exact_match": comparison([0.0] * 8, [1.0] * 8)}
    per_env = eval_envs.per_env(rows(set(), 8), rows(set(range(8)), 8), {},
                                lambda b, c: pytest.fail("recomputed"), "exact_match", overall)
    assert list(per_env) == [envs.DEFAULT] and per_env[envs.DEFAULT]["metrics"] is overall
    assert not eval_envs.named(per_env)


# ------------------------------------------------------------- the verdict, on crafted scores

N = 40


@pytest.fixture
def two_envs(chat_project):
    """A frozen split of 30 examples in env a and 10 in env b; the candidate learned a and
    forgot b, so it beats the base model overall."""
    config = json.loads((chat_project / "training-config.json").read_text())
    config["eval"].update(metrics=["loss", "exact_match"], bootstrap_resamples=2000)
    (chat_project / "training-config.json").write_text(json.dumps(config))
    ctx = pipeline.open_context(chat_project)
    records = []
    for i in range(N):
        messages = [{"role": "user", "content": f"q{i}"},
                    {"role": "assistant", "content": f"a{i}"}]
        records.append({"id": f"id{i:02d}", "key": conversation_key(messages), "source": "t",
                        "format": "messages", "messages": messages, "meta": {},
                        "env": "a" if i < 30 else "b"})
    splits.freeze(ctx.project, records)
    adapter = chat_project / "models" / "checkpoints" / "lora"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    atomic.write_json(chat_project / "metrics" / "baseline.json",
                      {"scoring": eval_scoring.fingerprint(ctx)})

    def scores(right):
        return [{"id": f"id{i:02d}", "env": "a" if i < 30 else "b",
                 "exact_match": float(i in right), "loss": 1.0, "prediction": "p",
                 "reference": f"a{i}"} for i in range(N)]
    atomic.write_jsonl(chat_project / "metrics" / "baseline-examples.jsonl",
                       scores(set(range(30, 40))))
    atomic.write_jsonl(chat_project / "metrics" / "eval-examples.jsonl", scores(set(range(30))))
    return ctx


def require_dominance(ctx):
    config = json.loads(ctx.project.config_file.read_text())
    config["eval"]["require_dominance"] = True
    ctx.project.config_file.write_text(json.dumps(config))
    return pipeline.open_context(ctx.project.root)


def test_verdict_reports_each_environment_and_passes_by_default(two_envs):
    verdict = evaluate.judge(two_envs)
    assert verdict["passed"], verdict["reason"]
    assert set(verdict["environments"]) == {"a", "b"}
    assert verdict["environments"]["b"]["outcome"] == "worse"
    assert verdict["dominance"]["required"] is False and verdict["dominance"]["worse"] == ["b"]
    json.dumps(verdict)  # it is written as JSON


def test_required_dominance_fails_the_verdict_naming_the_worse_environment(two_envs):
    verdict = evaluate.judge(require_dominance(two_envs))
    assert not verdict["passed"]
    assert "passes" not in verdict["reason"] and "exact_match 0.25 → 0.75" in verdict["reason"]
    assert "but it does not dominate across environments" in verdict["reason"]
    assert "significantly worse in b (1 → 0" in verdict["reason"]
    report = eval_report_text(two_envs, verdict)
    assert "## Per environment" in report and "| b | 10 | 1 | 0 |" in report
    assert "does not dominate" in report


def test_promoted_model_is_compared_per_environment_too(two_envs):
    from factory import registry
    from factory.hashing import hash_path

    pid = f"v1-{'c' * 8}"
    folder = two_envs.project.deployed_dir / pid
    folder.mkdir(parents=True)
    # The promoted model got half of env a right and none of env b.
    atomic.write_jsonl(folder / registry.EXAMPLES, [
        {"id": f"id{i:02d}", "exact_match": float(i < 15), "loss": 1.0} for i in range(N)])
    registry.write(two_envs.project, {"schema": 1, "current": pid, "promotions": [{
        "id": pid, "checkpoint_hash": "c" * 64, "model_identity": None,
        "scoring": eval_scoring.fingerprint(two_envs),
        "eval_split_hash": hash_path(two_envs.project.split_file("eval"))}]})
    verdict = evaluate.judge(two_envs, evaluate.promoted_model(two_envs))
    by_env = verdict["promoted"]["environments"]
    assert by_env["a"]["metrics"]["exact_match"]["baseline"] == 0.5
    assert by_env["a"]["outcome"] == "better" and by_env["b"]["n"] == 10
    assert "| a | 30 | 0 | 1 | 0.5 |" in eval_report_text(two_envs, verdict)


def test_unlabelled_data_has_one_environment_and_the_report_as_before(two_envs):
    split = two_envs.project.split_file("eval")
    unlabelled = [{k: v for k, v in json.loads(line).items() if k != "env"}
                  for line in split.read_text().splitlines()]
    splits.freeze(two_envs.project, unlabelled)
    verdict = evaluate.judge(require_dominance(two_envs))
    assert list(verdict["environments"]) == [envs.DEFAULT]
    assert verdict["environments"][envs.DEFAULT]["metrics"] == verdict["metrics"]
    # One environment, better overall: it dominates, and the requirement changes nothing.
    assert verdict["dominance"]["dominates"] and verdict["passed"], verdict["reason"]
    assert "Per environment" not in eval_report_text(two_envs, verdict)


def eval_report_text(ctx, verdict) -> str:
    from agents import eval_report

    base = evaluate._rows(ctx.project.metrics_dir / "baseline-examples.jsonl")
    cand = evaluate._rows(ctx.project.metrics_dir / "eval-examples.jsonl")
    return eval_report.markdown({**verdict, "judged_at": "now"}, base, cand)


# --------------------------------------------------------------------------- e2e, real CLI

# Stands in for a behaviour training changed per environment, so the test needs no long
# training: scoring the candidate (the variable set only for that run), the answer "solves" env
# a and fails env b; scoring the base model, the reverse. The pipeline around it is the real one.
SKILL = '''import os


def reward(answer, context):
    candidate = os.environ.get("MF_TEST_SCORING_CANDIDATE") == "1"
    return float(candidate == (context["meta"].get("env") == "a"))
'''


@pytest.mark.e2e
def test_cli_gate_requiring_dominance_fails_when_one_environment_is_worse(demo_project):
    records = demo_data.demo_records(160)
    atomic.write_jsonl(demo_project / "data" / "raw" / "demo.jsonl",
                       [{**r, "env": "b" if i % 4 == 0 else "a"} for i, r in enumerate(records)])
    (demo_project / "rewards").mkdir()
    (demo_project / "rewards" / "skill.py").write_text(SKILL)
    config_path = demo_project / "training-config.json"
    config = json.loads(config_path.read_text())
    config["data"]["split"]["eval"] = 0.4
    config["training"].update(max_steps=1, save_steps=1, logging_steps=1)
    config["rewards"] = [{"name": "skill", "type": "python", "file": "rewards/skill.py"}]
    config["eval"].update(metrics=["loss", "exact_match", "reward:skill"],
                          primary_metric="reward:skill", guards={}, max_new_tokens=4,
                          bootstrap_resamples=2000, require_dominance=True)
    config_path.write_text(json.dumps(config))

    rc, out = factory("-C", str(demo_project), "run", "baseline")
    assert rc == 0, out
    frozen = [json.loads(line) for line in (demo_project / "data/splits/eval.jsonl").open()]
    scored = [json.loads(line) for line in (demo_project / "metrics/baseline-examples.jsonl")
              .open()]
    assert {r["env"] for r in frozen} == {r["env"] for r in scored} == {"a", "b"}

    rc, out = factory("-C", str(demo_project), "run", "--all",
                      env={"MF_TEST_SCORING_CANDIDATE": "1"})
    assert rc == 3 and out["error"]["code"] == "E_NOT_BETTER", out
    assert "does not dominate across environments" in out["error"]["message"]
    assert "significantly worse in b (" in out["error"]["message"]
    report = json.loads((demo_project / "metrics" / "data-report.json").read_text())
    assert set(report["environments"]) == {"a", "b"}
    assert sum(report["environments"].values()) == report["valid"]
    assert "## Environments" in (demo_project / "reports" / "data.md").read_text()

    verdict = json.loads((demo_project / "metrics" / "verdict.json").read_text())
    skill = verdict["metrics"]["reward:skill"]
    assert skill["improvement"] >= 0.05 and skill["ci_low"] > 0, "it passes every other rule"
    by_env = verdict["environments"]
    assert by_env["a"]["n"] + by_env["b"]["n"] == len(frozen)
    assert by_env["a"]["metrics"]["reward:skill"]["candidate"] == 1.0
    assert by_env["b"]["metrics"]["reward:skill"]["candidate"] == 0.0
    assert (by_env["a"]["outcome"], by_env["b"]["outcome"]) == ("better", "worse")
    assert by_env["a"]["metrics"]["loss"]["n"] == by_env["a"]["n"]
    assert verdict["dominance"] == {"metric": "reward:skill", "required": True,
                                    "dominates": False, "better": ["a"], "worse": ["b"],
                                    "unclear": []}
    assert "## Per environment" in (demo_project / "reports" / "eval.md").read_text()

    rc, out = factory("-C", str(demo_project), "status")
    assert rc == 0
    assert out["result"]["eval"]["dominates"] is False
    assert out["result"]["eval"]["worse_environments"] == ["b"]

    # The same candidate under the default rule: dominance is reported, not required.
    config["eval"]["require_dominance"] = False
    config_path.write_text(json.dumps(config))
    rc, out = factory("-C", str(demo_project), "run", "evaluate",
                      env={"MF_TEST_SCORING_CANDIDATE": "1"})
    assert rc == 0, out
    verdict = json.loads((demo_project / "metrics" / "verdict.json").read_text())
    assert verdict["passed"] and verdict["dominance"]["worse"] == ["b"]
    assert out["result"]["gates"][0]["summary"]["dominates"] is False
