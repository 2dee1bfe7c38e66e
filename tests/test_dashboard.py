"""`factory ui`: the loss history the training callback keeps, the dashboard's routes on a real
server, and the page itself in headless Chromium following a real training run."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import FACTORY, check_shape, factory
from factory import dashboard
from factory.project import Project

READY = re.compile(r"^dashboard at (http://\S+/) \(project (.+)\)$", re.MULTILINE)
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16  # the signature is all report_png looks at
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


# --- the loss history: .factory/training-log.jsonl -------------------------------------------

def _state(step: int) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=10, epoch=step / 10)


def _train(status_file: Path, stage: str, start: int, steps: range) -> None:
    from factory.runtime.status import TrainingStatus

    callback, control = TrainingStatus(status_file, 1.0, stage=stage), SimpleNamespace()
    callback.on_train_begin(None, _state(start), control)
    for step in steps:
        callback.on_log(None, _state(step), control, logs={"loss": 1 / step,
                                                             "learning_rate": 0.1})
    callback.on_log(None, _state(steps[-1] if steps else start), control,
                    logs={"eval_loss": 0.5})  # an eval log is no step of the curve


def test_training_log_restarts_keeps_a_resumed_past_and_earlier_stages(tmp_path):
    project = Project(tmp_path)
    status_file, log = project.training_status_file, project.training_log_file

    def logged() -> list[tuple[str, int]]:
        return [(row["stage"], row["step"]) for row in dashboard.training(project)["history"]]

    _train(status_file, "1/2 sft", 0, range(1, 5))
    assert logged() == [("1/2 sft", s) for s in (1, 2, 3, 4)]
    row = json.loads(log.read_text().splitlines()[0])
    assert set(row) == {"step", "epoch", "loss", "learning_rate", "reward", "stage", "at"}
    _train(status_file, "1/2 sft", 2, range(3, 4))  # resumed from the checkpoint at step 2
    assert logged() == [("1/2 sft", s) for s in (1, 2, 3)]
    _train(status_file, "2/2 dpo", 0, range(1, 3))  # the chain's next stage keeps stage 1's
    assert logged() == [("1/2 sft", 1), ("1/2 sft", 2), ("1/2 sft", 3), ("2/2 dpo", 1),
                        ("2/2 dpo", 2)]
    _train(status_file, "1/2 sft", 0, range(1, 2))  # a new run starts from nothing
    assert logged() == [("1/2 sft", 1)]
    with open(log, "a") as fh:
        fh.write('{"step": 2, "loss": NaN, "stage": "1/2 sft"}\n{"step": 3, "lo')  # torn line
    assert dashboard.training(project)["history"][-1] == {"step": 2, "loss": None,
                                                          "stage": "1/2 sft"}


def test_history_is_thinned_to_a_bounded_curve_ending_at_the_current_step():
    rows = [{"step": s} for s in range(1, 1235)]
    thinned = dashboard.thin(rows, 500)
    assert len(thinned) <= 500 and thinned[0]["step"] == 1 and thinned[-1]["step"] == 1234
    assert dashboard.thin(rows[:10], 500) == rows[:10]


# --- the routes, on a real `factory ui` ----------------------------------------------------

def start_ui(project: Path, logs: Path, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """`factory ui <project> --port 0 --json`, listening; (process, base URL)."""
    out, err = logs / "ui.stdout", logs / "ui.stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen([FACTORY, "ui", str(project), "--port", "0", "--json"],
                                stdout=stdout, stderr=stderr, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = READY.search(err.read_text(errors="replace"))
        if found:
            return proc, found.group(1).rstrip("/")
        assert proc.poll() is None, f"factory ui exited: {out.read_text()}{err.read_text()}"
        time.sleep(0.1)
    stop_ui(proc)
    raise AssertionError(f"factory ui did not listen within {timeout}s: {err.read_text()}")


def stop_ui(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def get(url: str, headers: dict | None = None) -> tuple[int, dict | bytes, Any]:
    """(status, parsed JSON or raw bytes, headers) of a GET."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, body, head = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, body, head = error.code, error.read(), error.headers
    is_json = "json" in (head["Content-Type"] or "")
    return status, json.loads(body) if is_json else body, head


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A fresh project with a training run's files, a verdict and report files, and its
    dashboard: (project, base URL)."""
    root = tmp_path_factory.mktemp("ui")
    project = root / "proj"
    rc, out = factory("init", str(project))
    assert rc == 0, out
    meta = project / ".factory"
    meta.mkdir(exist_ok=True)
    (meta / "training-status.json").write_text(json.dumps(
        {"running": False, "step": 3, "total_steps": 3, "loss": float("nan"),
         "error": "loss became nan", "stage": "1/1 sft"}))
    (meta / "training-log.jsonl").write_text("".join(
        json.dumps({"step": s, "loss": 2.0 / s, "stage": "1/1 sft"}) + "\n" for s in (1, 2)))
    (project / "metrics").mkdir()
    (project / "metrics" / "verdict.json").write_text(json.dumps(
        {"passed": False, "reason": "exact_match 0 → 0 is below min_delta 0.05",
         "primary_metric": "exact_match", "guards": {}, "promoted": None,
         "metrics": {"exact_match": {"baseline": 0.0, "candidate": 0.0, "n": 3}}}))
    reports = project / "reports"
    reports.mkdir()
    (reports / "eval-deltas.png").write_bytes(PNG)
    (reports / "eval.md").write_text("# not an image\n")
    (reports / "fake.png").write_text("not a PNG at all")
    (root / "outside.png").write_bytes(PNG)
    (reports / "link-out.png").symlink_to(root / "outside.png")
    (reports / "config.png").symlink_to(project / "training-config.json")
    proc, url = start_ui(project, root)
    yield project, url
    stop_ui(proc)


def test_page_is_one_self_contained_file(ui):
    _, url = ui
    status, page, headers = get(url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = page.decode()
    for element in ('id="step"', 'id="total-steps"', 'id="loss-curve"', 'id="gates"',
                    'id="metrics"', 'id="delta-plot"'):
        assert element in page
    assert not re.search(r"(?:src|href|url)\s*[=(]\s*[\"']?(?:https?:)?//", page)
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert ".innerHTML" not in page  # data goes in as text only


def test_status_is_what_factory_status_says(ui):
    project, url = ui
    status, body, _ = get(url + "/api/status")
    assert status == 200 and set(body) == {"result", "next"}
    result = body["result"]
    assert result["project"] == str(project) and result["state"] == "new"
    assert [g["name"] for g in result["gates"]] == ["baseline", "format", "finetune",
                                                    "evaluate", "deploy"]
    assert {"status", "summary", "changed"} <= set(result["gates"][0])
    assert body["next"]["command"] == "factory run baseline"
    assert result["training"]["loss"] is None  # NaN, which JSON.parse would refuse


def test_an_unreadable_project_is_shown_as_its_error(ui):
    project, url = ui
    config = project / "training-config.json"
    good = config.read_text()
    config.write_text("{ half a config")  # as an editor may leave it for a moment
    try:
        time.sleep(dashboard.STATUS_REUSE_S + 0.1)
        status, body, _ = get(url + "/api/status")
        assert status == 503 and body["result"] is None
        assert body["error"]["code"] == "E_CONFIG" and body["next"]["command"] is None
    finally:
        config.write_text(good)
    time.sleep(dashboard.STATUS_REUSE_S + 0.1)
    assert get(url + "/api/status")[0] == 200


def test_training_has_the_status_and_the_loss_history(ui):
    _, url = ui
    status, body, _ = get(url + "/api/training")
    assert status == 200
    assert body["status"]["step"] == 3 and body["status"]["error"] == "loss became nan"
    assert [(r["step"], r["loss"]) for r in body["history"]] == [(1, 2.0), (2, 1.0)]


def test_verdict_with_its_plot_and_404_before_evaluate(ui):
    project, url = ui
    status, body, _ = get(url + "/api/verdict")
    assert status == 200 and body["verdict"]["passed"] is False
    assert body["verdict"]["metrics"]["exact_match"]["n"] == 3
    assert re.fullmatch(r"/reports/eval-deltas\.png\?v=\d+", body["plot"])
    status, image, headers = get(url + body["plot"])
    assert status == 200 and image == PNG and headers["Content-Type"] == "image/png"
    verdict = project / "metrics" / "verdict.json"
    verdict.rename(verdict.with_suffix(".away"))
    try:
        assert get(url + "/api/verdict")[:2] == (404, {"verdict": None, "plot": None})
    finally:
        verdict.with_suffix(".away").rename(verdict)


@pytest.mark.parametrize("path", [
    "/reports/eval.md", "/reports/fake.png", "/reports/link-out.png", "/reports/config.png",
    "/reports/missing.png", "/reports/..%2Ftraining-config.json", "/reports/%2e%2e",
    "/reports/../training-config.json", "/reports/..%2F..%2Foutside.png",
    "/training-config.json", "/metrics/verdict.json", "/.factory/state.json"])
def test_nothing_but_pngs_inside_reports_is_served(ui, path):
    _, url = ui
    assert get(url + path)[0] == 404


def test_a_foreign_host_name_is_refused(ui):
    # A page elsewhere that rebinds its own name to 127.0.0.1 still sends its name as Host.
    _, url = ui
    assert get(url + "/api/status", headers={"Host": "evil.example"})[0] == 400
    assert get(url.replace("127.0.0.1", "localhost") + "/api/training")[0] == 200


def test_ui_stops_on_sigint_with_its_result(tmp_path):
    project = tmp_path / "proj"
    assert factory("init", str(project))[0] == 0
    proc, url = start_ui(project, tmp_path)
    assert stop_ui(proc, signal.SIGINT) == 0
    payload = json.loads((tmp_path / "ui.stdout").read_text())
    check_shape(payload)
    assert payload["result"] == {"project": str(project), "url": url + "/",
                                 "stopped_by": "SIGINT"}
    assert payload["next"]["command"] == f"factory ui {project}"


def test_ui_outside_a_project_is_a_typed_error(tmp_path):
    rc, out = factory("ui", str(tmp_path))
    assert rc == 2 and out["error"]["code"] == "E_NOT_A_PROJECT"


# --- the page in headless Chromium, following a real training run ---------------------------

def _require_browser():
    """Skip (fail under FACTORY_REQUIRE_BROWSER=1, as CI sets) without Chromium or selenium."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = (f"the dashboard browser test needs {', '.join(missing)} "
                  "(apt-get install chromium chromium-driver; pip install selenium)")
        if os.environ.get("FACTORY_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,1400"):
        options.add_argument(flag)
    # The driver's path is given: Selenium Manager never tries to download one.
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _wait_for(what: str, read, done, timeout: float, alive=lambda: True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if done(value):
            return value
        assert alive(), f"the training run ended while waiting for {what}"
        time.sleep(0.25)
    raise AssertionError(f"no {what} within {timeout}s (last seen: {value!r})")


@pytest.mark.e2e
def test_the_page_follows_a_live_training_run(request, tmp_path):
    _require_browser()  # before the demo project is built, so a skip costs nothing
    from selenium.webdriver.common.by import By

    project = request.getfixturevalue("demo_project")
    config_path = project / "training-config.json"
    config = json.loads(config_path.read_text())
    # Long enough to watch, a status line every step, no checkpoint writes slowing it down.
    config["training"].update(max_steps=100_000, logging_steps=1, save_steps=100_000)
    config_path.write_text(json.dumps(config, indent=2))
    for gate in ("baseline", "format"):
        rc, out = factory("-C", str(project), "run", gate)
        assert rc == 0, out
    train = subprocess.Popen([FACTORY, "-C", str(project), "run", "finetune", "--json"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    ui_proc, driver = None, None
    try:
        ui_proc, url = start_ui(project, tmp_path)
        driver = _chromium()
        driver.get(url + "/")
        step = lambda: driver.find_element(By.ID, "step").text  # noqa: E731
        alive = lambda: train.poll() is None  # noqa: E731
        first = int(_wait_for("first logged step", step, lambda s: s.isdigit() and int(s) > 0,
                              120, alive))
        time.sleep(2)
        later = int(_wait_for("a later step", step, lambda s: int(s) > first, 30, alive))
        assert later > first
        assert driver.find_element(By.ID, "total-steps").text == "100000"
        assert driver.find_element(By.ID, "run-state").text == "running"
        points = _wait_for("a loss curve", lambda: driver.find_element(
            By.CSS_SELECTOR, "#loss-curve polyline").get_attribute("points").split(),
            lambda p: len(p) >= 2, 15)
        assert all(re.fullmatch(r"[\d.]+,[\d.]+", p) for p in points)
        steps = [r["step"] for r in get(url + "/api/training")[1]["history"]]
        assert steps[0] == 1 and steps == sorted(set(steps))  # a fresh run's log, in order
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
                  and "/api/verdict" not in e["message"]]  # 404 there: not judged yet
        assert not errors, errors
    finally:
        os.killpg(train.pid, signal.SIGKILL)
        train.wait()
        if driver is not None:
            driver.quit()
        if ui_proc is not None:
            stop_ui(ui_proc)
