"""The format gate end to end through the real CLI: every file type and format in one project."""
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import factory

CITIES = ["Paris", "Oslo", "Lima", "Tokyo", "Cairo", "Quito", "Perth", "Accra", "Delhi", "Rome"]


def call(city, day):
    return (f"<start_function_call>call:get_weather{{city:<escape>{city}<escape>,"
            f"day:<escape>{day}<escape>}}<end_function_call>")


def trajectory(i, reward):
    city = CITIES[i % len(CITIES)]
    return {"messages": [{"role": "user", "content": f"Weather in {city}, day {i}?"},
                         {"role": "assistant", "content": call(city, f"day {i}")}],
            "reward": reward, "tiers": {"static": {"passed": reward > 0.5}},
            "storyResult": {"passed": True, "totalAssertions": 5}}


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


@pytest.fixture
def mixed_project(tmp_path, demo_template):
    """A project whose data/raw holds jsonl, json, csv, parquet and a LLaMA-Factory folder."""
    project = tmp_path / "mixed"
    rc, out = factory("init", str(project))
    assert rc == 0, out
    shutil.copytree(demo_template / "models" / "base", project / "models" / "base")
    raw = project / "data" / "raw"
    rows = [trajectory(i, reward=(i % 10) / 10) for i in range(150)]
    rows += rows[:5]  # exact duplicates
    rows.append({**trajectory(900, 0.9), "reward": "high"})  # line 156: not a number
    rows.append({"messages": [{"role": "user", "content": "x"}, {"role": "assistant",
                 "content": "<start_function_call>call:f{a:<escape>x}<end_function_call>"}],
                 "reward": 1.0})  # line 157: malformed FunctionGemma call
    write_jsonl(raw / "trajectories.jsonl", rows)
    (raw / "sharegpt.json").write_text(json.dumps([
        {"conversations": [{"from": "human", "value": f"Say hi to person {i}"},
                           {"from": "gpt", "value": f"Hi, person {i}!"}]} for i in range(40)]))
    (raw / "alpaca.csv").write_text("instruction,input,output\n" + "".join(
        f"Add,{i} and {i},{2 * i}\n" for i in range(40)))
    pq.write_table(pa.Table.from_pylist([
        {"prompt": f"Is {i} even?", "completion": "yes" if i % 2 == 0 else "no",
         "label": i % 4 != 3} for i in range(40)]), raw / "kto.parquet")
    lf = raw / "llamafactory"
    lf.mkdir()
    (lf / "data.json").write_text(json.dumps([
        {"q": f"Capital number {i}?", "a": f"City {i}"} for i in range(40)]))
    (lf / "dataset_info.json").write_text(json.dumps({
        "capitals": {"file_name": "data.json", "columns": {"prompt": "q", "response": "a"}}}))

    config_path = project / "training-config.json"
    config = json.loads(config_path.read_text())
    config["model"].update(name="models/base", max_length=160)
    config["data"].update(on_error="skip", min_reward=0.3, min_eval_records=5)
    config["eval"]["max_new_tokens"] = 4
    config_path.write_text(json.dumps(config, indent=2))
    return project


def run(project, *args):
    return factory("-C", str(project), *args)


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.e2e
def test_every_format_lands_in_the_splits_with_a_report(mixed_project):
    rc, out = run(mixed_project, "run", "baseline")
    assert rc == 0, out
    rc, out = run(mixed_project, "run", "format")
    assert rc == 0, out

    report = json.loads((mixed_project / "metrics" / "data-report.json").read_text())
    files = {f["file"]: f for f in report["files"]}
    assert {f: files[f]["format"] for f in files} == {
        "data/raw/llamafactory/data.json": "alpaca", "data/raw/alpaca.csv": "alpaca",
        "data/raw/kto.parquet": "kto", "data/raw/sharegpt.json": "sharegpt",
        "data/raw/trajectories.jsonl": "trajectory"}
    assert files["data/raw/llamafactory/data.json"]["dataset"] == "capitals"
    assert report["bad"] == 2 and report["duplicates"] == 5
    assert report["below_min_reward"] == 45  # rewards 0.0, 0.1 and 0.2 of 150
    # Undesirable KTO rows teach SFT nothing (those outside the eval bucket are counted).
    assert report["kinds"]["binary"] == 40 and 0 < report["not_for_method"]["binary"] <= 10
    assert report["tokens"]["max"] <= 160 and report["reward"]["count"] == 105

    rejected = read_rows(mixed_project / "data" / "rejected.jsonl")
    assert [(r["file"], r["pos"]) for r in rejected] == [
        ("data/raw/trajectories.jsonl", 156), ("data/raw/trajectories.jsonl", 157)]
    assert rejected[0]["problems"][0]["field"] == "reward"
    assert rejected[1]["problems"][0]["field"] == "messages.1.content"
    assert "offset" in rejected[1]["problems"][0]["found"]

    train = read_rows(mixed_project / "data" / "splits" / "train.jsonl")
    val = read_rows(mixed_project / "data" / "splits" / "val.jsonl")
    evals = read_rows(mixed_project / "data" / "splits" / "eval.jsonl")
    assert len(train) == report["splits"]["train"] and len(val) == report["splits"]["val"]
    frozen = {r["key"] for r in evals}
    assert not frozen & {r["key"] for r in train + val}
    assert all(r["messages"][-1]["role"] == "assistant" for r in train)
    # Every kept record is somewhere: a split, the frozen eval, held back, or unusable for SFT.
    placed = sum(report["splits"].values()) + len(evals) + report["not_for_method"]["binary"]
    assert placed == 105 + 40 + 40 + 40 + 40

    rc, status = run(mixed_project, "status")
    assert "train" in status["result"]["data"]["summary"]
    assert (mixed_project / "reports" / "data.md").read_text().startswith("# Data report")


@pytest.mark.e2e
def test_bad_data_stops_the_gate_and_writes_no_split(mixed_project):
    config_path = mixed_project / "training-config.json"
    config = json.loads(config_path.read_text())
    config["data"]["on_error"] = "fail"
    config_path.write_text(json.dumps(config))
    rc, out = run(mixed_project, "run", "baseline")
    assert rc == 2 and out["error"]["code"] == "E_SCHEMA"
    assert {p["line"] for p in out["error"]["details"]["problems"]} == {156, 157}
    assert not (mixed_project / "data" / "splits" / "eval.jsonl").exists()

    # The two bad lines removed, baseline passes; new bad data then stops format cold.
    lines = (mixed_project / "data" / "raw" / "trajectories.jsonl").read_text().splitlines()
    write_jsonl(mixed_project / "data" / "raw" / "trajectories.jsonl", lines[:155])
    rc, out = run(mixed_project, "run", "baseline")
    assert rc == 0, out
    write_jsonl(mixed_project / "data" / "raw" / "late.jsonl",
                [trajectory(500, 0.9), {"messages": [], "reward": 1.0}])
    rc, out = run(mixed_project, "run", "format")
    assert rc == 2 and out["error"]["code"] == "E_SCHEMA", out
    [problem] = out["error"]["details"]["problems"]
    assert (problem["file"], problem["line"], problem["field"]) == (
        "data/raw/late.jsonl", 2, "messages")
    assert not (mixed_project / "data" / "splits" / "train.jsonl").exists()
    assert not list((mixed_project / "data" / "splits").glob(".*.tmp"))
    rc, status = run(mixed_project, "status")
    assert status["result"]["state"] == "format_failed"


@pytest.mark.e2e
def test_records_over_max_length_fail_or_are_dropped(mixed_project):
    assert run(mixed_project, "run", "baseline")[0] == 0
    long_rows = [{"messages": [{"role": "user", "content": f"Tell a long story {i}."},
                               {"role": "assistant", "content": "once upon a time " * 80}],
                  "reward": 1.0} for i in range(10)]
    write_jsonl(mixed_project / "data" / "raw" / "long.jsonl", long_rows)
    rc, out = run(mixed_project, "run", "format")
    assert rc == 2 and out["error"]["code"] == "E_TOO_LONG", out
    too_long = out["error"]["details"]["records"]
    assert too_long and all(r["source"].startswith("data/raw/long.jsonl:") for r in too_long)
    assert all(r["tokens"] > 160 for r in too_long)

    config_path = mixed_project / "training-config.json"
    config = json.loads(config_path.read_text())
    config["data"]["on_too_long"] = "drop"
    config_path.write_text(json.dumps(config))
    rc, out = run(mixed_project, "run", "format")
    assert rc == 0, out
    report = json.loads((mixed_project / "metrics" / "data-report.json").read_text())
    assert report["too_long"] == len(too_long)
    train = (mixed_project / "data" / "splits" / "train.jsonl").read_text()
    assert "once upon a time" not in train
