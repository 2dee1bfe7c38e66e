"""`factory watch`: the real command in a subprocess, driven by real file writes in a temp dir.

Every watcher runs with `--until format`, so a run stops before training, and a short debounce.
The projects are copies of one demo project whose baseline and format gates passed once.
"""
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from agents import baseline
from conftest import CLI_SCHEMAS, FACTORY, check_shape, factory
from factory import demo_data, pipeline
from factory.errors import FactoryError
from factory.lock import ProjectLock
from factory.normalise import conversation_key
from factory.project import Project
from factory.splits import bucket
from factory.state import ProjectState

DEBOUNCE = 0.5
RUN_TIMEOUT = 120  # one format run is ~7 s on two cores; generous for a loaded machine


# --- fixtures and helpers ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def formatted_template(demo_template, tmp_path_factory) -> Path:
    """The demo project with baseline and format passed, built once per session."""
    target = tmp_path_factory.mktemp("formatted") / "demo"
    shutil.copytree(demo_template, target)
    # Stand-in for a passed baseline, as in test_pipeline: the eval split frozen as the gate
    # does, the gate recorded with its real hashes. Scoring a model is the e2e tests' business.
    ctx = pipeline.open_context(target)
    baseline.freeze_eval_split(ctx)
    ProjectState.load(ctx.project).record_pass(
        "baseline", inputs=baseline.inputs(ctx), outputs=baseline.outputs(ctx), summary={})
    ctx.cache.save()
    rc, out = factory("-C", str(target), "run", "format")
    assert rc == 0, out
    return target


def copy_of(template: Path, target: Path) -> Path:
    shutil.copytree(template, target)
    return target


@pytest.fixture
def formatted(formatted_template, tmp_path) -> Path:
    return copy_of(formatted_template, tmp_path / "demo")


def records(n: int, tag: str, split: str = "train") -> list[dict]:
    """n new chats whose prompt hash puts them in `split` (new data never moves into eval)."""
    found, i = [], 0
    while len(found) < n:
        contact = demo_data.CONTACTS[i % len(demo_data.CONTACTS)]
        text = f"{demo_data.TEXTS[i % len(demo_data.TEXTS)]} {tag} {i}"
        messages = [{"role": "system", "content": demo_data.SYSTEM_PROMPT},
                    {"role": "user", "content": f"Text {contact}: {text}"},
                    {"role": "assistant", "content": "<start_function_call>call:send_message{"
                     f"contact:<escape>{contact}<escape>,text:<escape>{text}<escape>}}"
                     "<end_function_call>"}]
        if bucket(conversation_key(messages), "model-factory", 0.1, 0.1) == split:
            found.append({"messages": messages})
        i += 1
    return found


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def rows_from(project: Path, raw_name: str, split: str = "train") -> list[str]:
    """Sources of the split's rows that came from data/raw/<raw_name>."""
    path = project / "data" / "splits" / f"{split}.jsonl"
    sources = [json.loads(line)["source"] for line in path.read_text().splitlines()]
    return [s for s in sources if s.startswith(f"data/raw/{raw_name}:")]


def watch_events(project: Path) -> list[dict]:
    lines = (project / ".factory" / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("kind") == "watch"]


def state(project: Path) -> dict:
    return json.loads((project / ".factory" / "state.json").read_text())


def processes_in(root: Path) -> list[int]:
    """Processes whose working directory is the project: gate scripts run there."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == root.resolve():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Watch:
    """`factory watch ... --json` in a subprocess, its stdout read line by line."""

    def __init__(self, *dirs: Path, debounce: float = DEBOUNCE, until: str = "format",
                 extra: tuple[str, ...] = ()):
        self.proc = subprocess.Popen(
            [FACTORY, "watch", *map(str, dirs), "--until", until, "--debounce", str(debounce),
             "--json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        self.running_gate = threading.Event()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        assert self.next(60)["event"] == "watching"

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)
            if "running: scripts/" in line:
                self.running_gate.set()

    def said(self, text: str, timeout: float = 30) -> str:
        """The first progress line (stderr) containing `text`, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.stderr) if text in line]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not said within {timeout}s:\n{''.join(self.stderr)}")

    def next(self, timeout: float = RUN_TIMEOUT) -> dict:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout}s; stderr:\n{''.join(self.stderr)}")
        assert line is not None, f"watch exited early; stderr:\n{''.join(self.stderr)}"
        found = json.loads(line)
        if "event" in found:  # a line per run (and the first): their own schema
            import jsonschema

            schema = json.loads((CLI_SCHEMAS / "watch.lines.schema.json").read_text())
            jsonschema.Draft202012Validator(schema).validate(found)
        else:
            check_shape(found)  # the closing document, or an error
        return found

    def run(self, timeout: float = RUN_TIMEOUT) -> dict:
        line = self.next(timeout)
        assert line["event"] == "run", line
        return line

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, dict]:
        """Signal it, and return its exit code and closing document."""
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=60)
        closing = self.next(10)
        return rc, closing

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- end to end -------------------------------------------------------------------------------

def test_new_data_file_runs_format_once(formatted):
    new = records(5, "new")
    with Watch(formatted) as w:
        (formatted / "data" / "raw" / "new.jsonl").write_text(jsonl(new))
        line = w.run()
        time.sleep(3 * DEBOUNCE)  # room for a second run, which must not come
        rc, closing = w.stop()

    assert line["project"] == str(formatted)
    assert line["trigger"] == ["data/raw/new.jsonl"]
    assert line["outcome"] == "passed" and line["error"] is None
    assert line["gates"] == [{"gate": "format", "outcome": "passed"}]
    assert line["state"] == "formatted"
    assert line["next"]["command"] == "factory run finetune"
    assert len(rows_from(formatted, "new.jsonl")) == 5

    [entry] = watch_events(formatted)
    assert entry["outcome"] == "passed" and entry["trigger"] == ["data/raw/new.jsonl"]
    assert entry["gates"] == line["gates"] and entry["to"] == "formatted"
    assert {"at", "gate", "from", "to", "inputs", "pid"} <= set(entry)
    assert set(entry["inputs"]) == {"raw_data", "config"}

    assert rc == 0 and closing["ok"] is True and closing["command"] == "watch"
    assert closing["result"] == {"projects": [str(formatted)], "runs": 1,
                                 "stopped_by": "SIGTERM"}


def test_a_burst_of_writes_gives_one_run(formatted):
    raw = formatted / "data" / "raw"
    rows = records(23, "burst")
    with Watch(formatted, extra=("--poll",)) as w:
        with open(raw / "appended.jsonl", "a") as fh:
            for row in rows[:20]:
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                time.sleep(0.02)
        for i, row in enumerate(rows[20:]):
            (raw / f"extra-{i}.jsonl").write_text(jsonl([row]))
        line = w.run()
        time.sleep(3 * DEBOUNCE)
        rc, closing = w.stop()

    assert line["outcome"] == "passed"
    assert line["trigger"] == ["data/raw/appended.jsonl", "data/raw/extra-0.jsonl",
                               "data/raw/extra-1.jsonl", "data/raw/extra-2.jsonl"]
    assert len(rows_from(formatted, "appended.jsonl")) == 20
    assert rc == 0 and closing["result"]["runs"] == 1


def test_a_half_written_file_is_not_read(formatted):
    debounce = 1.5
    rows = records(4, "half")
    text = jsonl(rows)
    cut = len(text) - len(json.dumps(rows[-1])) // 2  # halfway through the last record
    with Watch(formatted, debounce=debounce) as w:
        with open(formatted / "data" / "raw" / "slow.jsonl", "w") as fh:
            fh.write(text[:cut])
            fh.flush()
            time.sleep(1.25 * debounce)  # longer than the debounce, shorter than twice it
            fh.write(text[cut:])
        line = w.run()
        w.stop()

    assert line["outcome"] == "passed", line["error"]
    assert line["trigger"] == ["data/raw/slow.jsonl"]
    assert len(rows_from(formatted, "slow.jsonl")) == 4


def test_same_content_triggers_nothing_and_a_rename_in_does(formatted):
    raw = formatted / "data" / "raw"
    demo = raw / "demo.jsonl"
    with Watch(formatted) as w:
        os.utime(demo)                             # touch
        demo.write_bytes(demo.read_bytes())        # an editor re-saving the same bytes
        config = formatted / "training-config.json"
        config.write_bytes(config.read_bytes())
        said = w.said("same content as at the last run")  # the burst was judged: no run
        (raw / "incoming.jsonl.part").write_text(jsonl(records(3, "renamed")))
        os.rename(raw / "incoming.jsonl.part", raw / "incoming.jsonl")
        line = w.run()                             # the first run line is the rename's
        rc, closing = w.stop()

    assert "data/raw/demo.jsonl" in said and "training-config.json" in said
    assert line["trigger"] == ["data/raw/incoming.jsonl"] and line["outcome"] == "passed"
    assert len(rows_from(formatted, "incoming.jsonl")) == 3
    assert closing["result"]["runs"] == 1 and len(watch_events(formatted)) == 1


def test_one_project_failing_does_not_stop_the_other(formatted_template, tmp_path):
    bad = copy_of(formatted_template, tmp_path / "bad")
    good = copy_of(formatted_template, tmp_path / "good")
    with Watch(bad, good) as w:
        with open(bad / "data" / "raw" / "demo.jsonl", "a") as fh:
            fh.write('{"messages": [{"role": "robot", "content": "x"}]}\n')
        failed = w.run()
        (good / "data" / "raw" / "new.jsonl").write_text(jsonl(records(2, "good")))
        passed = w.run()
        rc, closing = w.stop()

    assert failed["project"] == str(bad) and failed["outcome"] == "failed"
    assert failed["error"]["code"] == "E_SCHEMA"
    assert failed["gates"] == [{"gate": "format", "outcome": "failed"}]
    assert failed["state"] == "format_failed"
    [entry] = watch_events(bad)
    assert entry["code"] == "E_SCHEMA" and entry["outcome"] == "failed"

    assert passed["project"] == str(good) and passed["outcome"] == "passed"
    assert len(rows_from(good, "new.jsonl")) == 2
    assert rc == 0 and closing["result"]["runs"] == 2


def test_a_locked_project_runs_once_the_lock_is_free(formatted):
    config = formatted / "training-config.json"
    with Watch(formatted) as w:
        with ProjectLock(Project.open(formatted)):        # another factory process, say
            config.write_text(config.read_text() + "\n")  # new bytes, the same settings
            busy = w.run()
        retried = w.run()
        rc, closing = w.stop()

    assert busy["outcome"] == "busy" and busy["error"]["code"] == "E_LOCKED"
    assert busy["trigger"] == ["training-config.json"] and busy["gates"] == []
    assert retried["trigger"] == ["training-config.json"]
    assert retried["outcome"] == "up_to_date" and retried["gates"] == []
    assert retried["state"] == "formatted"
    assert [e["outcome"] for e in watch_events(formatted)] == ["busy", "up_to_date"]
    assert closing["result"]["runs"] == 2


def test_sigterm_lets_the_running_gate_finish_and_starts_no_other(formatted):
    # Stale at start: the watcher runs it once without waiting for a change.
    (formatted / "data" / "raw" / "new.jsonl").write_text(jsonl(records(2, "term")))
    with Watch(formatted, until="finetune") as w:
        assert w.running_gate.wait(RUN_TIMEOUT)
        w.proc.send_signal(signal.SIGTERM)
        line = w.run()
        rc = w.proc.wait(timeout=60)
        closing = w.next(10)

    assert line["trigger"] == [] and line["outcome"] == "interrupted"
    assert line["gates"] == [{"gate": "format", "outcome": "passed"}], "finetune never started"
    assert state(formatted)["state"] == "formatted"
    assert not (formatted / ".factory" / "logs" / "finetune.log").exists()
    assert rc == 0 and closing["result"]["stopped_by"] == "SIGTERM"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_second_sigterm_interrupts_the_gate_and_never_claims_it(formatted):
    (formatted / "data" / "raw" / "new.jsonl").write_text(jsonl(records(2, "twice")))
    with Watch(formatted) as w:
        assert w.running_gate.wait(RUN_TIMEOUT)
        time.sleep(1.0)  # the script is up (it takes ~5 s)
        w.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        w.proc.send_signal(signal.SIGTERM)
        line = w.run()
        rc = w.proc.wait(timeout=60)
        closing = w.next(10)

    assert line["outcome"] == "interrupted"
    assert line["gates"] == [{"gate": "format", "outcome": "interrupted"}]
    assert line["error"]["code"] == "E_INTERRUPTED"
    record = state(formatted)
    assert record["state"] == "format_failed"
    assert record["gates"]["format"]["error"]["code"] == "E_INTERRUPTED"
    assert processes_in(formatted) == [], "the gate's script was stopped, not orphaned"
    assert rc == 0 and closing["result"]["stopped_by"] == "SIGTERM"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_during_factory_run_records_the_gate_as_interrupted(formatted):
    proc = subprocess.Popen([FACTORY, "-C", str(formatted), "run", "format", "--force", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "running: scripts/format.py" in line:
                break
        time.sleep(1.0)  # the script is up (it takes ~5 s)
        proc.send_signal(signal.SIGINT)  # the factory process only, as a terminal would not
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 130
    assert json.loads(out)["error"]["code"] == "E_INTERRUPTED"
    record = state(formatted)
    assert record["state"] == "format_failed"
    assert record["gates"]["format"]["error"]["code"] == "E_INTERRUPTED"
    assert processes_in(formatted) == []


# --- units --------------------------------------------------------------------------------------

class FakeFiles:
    def __init__(self):
        self.stats: dict[str, tuple[int, int] | None] = {}

    def write(self, path: str, size: int, at: float) -> None:
        self.stats[path] = (size, int(at * 1e9))

    def stat(self, path: str):
        return self.stats.get(path)


def test_debouncer_waits_for_quiet_then_for_stable_files():
    from factory.watch import Debouncer

    files = FakeFiles()
    d = Debouncer(1.0, stat=files.stat)
    for t in (0.0, 0.3, 0.6):                      # a burst: one run, after it
        files.write("a", int(t * 10) + 1, t)
        d.add("p", "a", t)
    d.add("p", "b", 0.6)
    assert d.due(1.5) == []                        # not quiet for 1 s yet
    assert d.due(1.7) == []                        # quiet: first look at the files
    assert d.due(2.6) == []                        # second look comes a debounce later
    assert d.due(2.8) == [("p", ["a", "b"])]       # unchanged at both looks: due
    assert d.due(10.0) == []                       # and forgotten


def test_debouncer_holds_back_a_writer_that_appends_without_events():
    from factory.watch import Debouncer

    files = FakeFiles()
    d = Debouncer(1.0, stat=files.stat)
    files.write("a", 10, 0.0)
    d.add("p", "a", 0.0)
    assert d.due(1.0) == []
    files.write("a", 20, 1.5)                      # grew, and the OS said nothing
    assert d.due(2.0) == []
    assert d.due(3.0) == [("p", ["a"])]


def test_debouncer_restarts_on_an_event_and_keeps_projects_apart():
    from factory.watch import Debouncer

    files = FakeFiles()
    d = Debouncer(1.0, stat=files.stat)
    d.add("p", "a", 0.0)
    d.add("q", "b", 0.0)
    assert d.due(1.0) == []
    d.add("p", "a", 1.5)                           # p is written again; q is not
    assert d.due(2.0) == [("q", ["b"])]
    assert d.due(3.5) == []
    assert d.due(4.5) == [("p", ["a"])]


def event(kind: str, src: str, dest: str = "", directory: bool = False):
    return SimpleNamespace(event_type=kind, src_path=src, dest_path=dest, is_directory=directory)


def test_only_data_and_config_changes_count(tmp_path):
    from factory.watch import Scope, changed_paths

    (tmp_path / "training-config.json").write_text("{}")
    project = Project.open(tmp_path)
    scope = Scope.of(project, tmp_path / "data" / "raw")
    raw = f"{tmp_path}/data/raw"
    assert changed_paths(event("modified", f"{raw}/a.jsonl"), scope) == [f"{raw}/a.jsonl"]
    assert changed_paths(event("created", f"{raw}/sub/b.csv"), scope) == [f"{raw}/sub/b.csv"]
    assert changed_paths(event("modified", f"{tmp_path}/training-config.json"), scope)
    for ignored in (f"{raw}/.hidden.jsonl", f"{raw}/a.jsonl.tmp", f"{raw}/a.jsonl.part",
                    f"{raw}/a.partial", f"{raw}/a.crdownload", f"{raw}/a.jsonl~",
                    f"{raw}/.a.jsonl.swp", f"{raw}/.cache/x.jsonl", f"{tmp_path}/README.md",
                    f"{tmp_path}/.factory/state.json", f"{tmp_path}/data/splits/train.jsonl"):
        assert changed_paths(event("modified", ignored), scope) == [], ignored
    assert changed_paths(event("opened", f"{raw}/a.jsonl"), scope) == []
    assert changed_paths(event("closed_no_write", f"{raw}/a.jsonl"), scope) == []
    assert changed_paths(event("modified", raw, directory=True), scope) == []
    renamed = event("moved", f"{raw}/a.jsonl.part", f"{raw}/a.jsonl")
    assert changed_paths(renamed, scope) == [f"{raw}/a.jsonl"]


def test_gates_a_raw_folder_encloses_are_not_triggers(tmp_path):
    from factory.watch import Scope

    (tmp_path / "training-config.json").write_text("{}")
    project = Project.open(tmp_path)
    scope = Scope.of(project, tmp_path / "data")   # data.raw_dir: "data"
    assert scope.relevant(f"{tmp_path}/data/mine.jsonl")
    assert not scope.relevant(f"{tmp_path}/data/splits/train.jsonl")
    assert not scope.relevant(f"{tmp_path}/data/rejected.jsonl")


def test_until_bounds_the_gates_drawn_after_reconciling(tmp_path):
    from factory.pipeline import todo

    (tmp_path / "training-config.json").write_text("{}")
    st = ProjectState.load(Project.open(tmp_path))
    assert todo(st, None, "format") == ["baseline", "format"]
    assert todo(st, None, None) == ["baseline", "format", "finetune", "evaluate", "deploy"]
    for gate in ("baseline", "format"):
        st.record_pass(gate, inputs={}, outputs={}, summary={})
    assert todo(st, None, "format") == []          # nothing to do unless reconcile rewinds
    assert todo(st, None, "baseline") == []
    st.rewind(1, gate="format", reason="changed: raw_data", inputs={})
    assert todo(st, None, "format") == ["format"]
    assert todo(st, ["deploy"], "format") == ["deploy"]  # named gates are run as named


def test_start_runs_only_a_stale_or_pending_gate_within_until(formatted):
    from factory.watch import Scope, Watched, wants_run_at_start

    project = Project.open(formatted)
    watched = Watched(project, Scope.of(project, formatted / "data" / "raw"))
    assert not wants_run_at_start(watched, "format")   # format passed: wait for a change
    assert wants_run_at_start(watched, None)           # finetune is pending
    (formatted / "data" / "raw" / "new.jsonl").write_text(jsonl(records(1, "start")))
    assert wants_run_at_start(watched, "format")       # format is stale
    assert not wants_run_at_start(watched, "baseline")
    ProjectState.load(project).record_failure("format", FactoryError("E_SCHEMA", "bad"),
                                              inputs={})
    assert not wants_run_at_start(watched, "format")   # failed: the same inputs fail again


def test_watch_imports_no_deep_learning_stack():
    code = ("import sys, factory.watch; "
            "print(sorted(m for m in ('torch', 'transformers', 'watchdog') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
