"""`factory watch`: re-run the pipeline whenever a project's data or config changes.

An observer thread (watchdog) reports file events for each project's raw data folder and its
training-config.json; the main thread owns every run, one at a time across projects, since a gate
may use every core of the machine. A burst of writes becomes one run: the project is due once no
event has come for `--debounce` seconds and then every changed file has the same size and mtime at
two checks that far apart, so a file still being written is not read. Content decides, never the
clock: a run starts only when the hashes of the watched files differ from the last run's, and
what it re-runs is what `pipeline.reconcile` finds stale. Gates run their scripts in subprocesses,
so nothing heavy is imported here. See docs/watch.md.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator

from factory import pipeline, standing
from factory.config import DataConfig, load_config
from factory.errors import FactoryError
from factory.hashing import HashCache, hash_path
from factory.lock import ProjectLock
from factory.project import CONFIG_NAMES, Project
from factory.state import FAILED, GATES, ProjectState, log_event, now

# Names writers use while a file is incomplete; the rename to the final name is the event.
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~")
# Event types that can change content; opened/closed-without-write come from readers (the
# format gate's own script, our hashing) and attrib from touch or chmod.
CHANGE_EVENTS = {"created", "modified", "moved", "deleted", "closed"}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# --- which file events matter ---------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """The paths of one project whose changes can make its format gate stale."""

    root: Path
    raw_dir: Path
    # What the gates themselves write, when it lies inside raw_dir (raw_dir "data" or "."):
    # their writes must never trigger the next run.
    own_outputs: tuple[Path, ...] = ()

    @classmethod
    def of(cls, project: Project, raw_dir: Path) -> "Scope":
        outputs = (project.factory_dir, project.splits_dir, project.rejected_file,
                   project.metrics_dir, project.scripts_dir, project.root / "reports",
                   project.root / "models")
        return cls(project.root, raw_dir,
                   tuple(p for p in outputs if raw_dir in p.parents))

    def relevant(self, path: str) -> bool:
        full = Path(path)
        if full.parent == self.root and full.name in CONFIG_NAMES:
            return True  # training-config.json, or factory.yaml appearing in its place
        if full != self.raw_dir and self.raw_dir not in full.parents:
            return False
        parts = full.relative_to(self.raw_dir).parts
        if any(part.startswith(".") for part in parts) or full.name.endswith(TEMP_SUFFIXES):
            return False  # hidden (hash_path skips them too) or still being written
        return not any(full == p or p in full.parents for p in self.own_outputs)


def changed_paths(event: Any, scope: Scope) -> list[str]:
    """The paths a watchdog event changed that matter to the project; a move counts for both
    ends, so a file written under a temp name and renamed in counts for its final name."""
    if event.event_type not in CHANGE_EVENTS:
        return []
    if event.is_directory and event.event_type in ("modified", "closed"):
        return []  # a folder's own mtime; the entries that changed have events of their own
    ends = [event.src_path, event.dest_path if event.event_type == "moved" else ""]
    return [os.fsdecode(p) for p in ends if p and scope.relevant(os.fsdecode(p))]


# --- when a burst is over -------------------------------------------------------------------

def file_stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # deleted, or renamed away: "missing" is a settled state too
    return st.st_size, st.st_mtime_ns


@dataclass
class _Burst:
    paths: set[str]
    last_event: float
    snapshot: dict[str, tuple[int, int] | None] | None = None
    checked_at: float = 0.0


class Debouncer:
    """Says when a key's burst of changes is over and the files it touched have settled.

    A key is due once no event for it has come for `quiet_s` seconds and then the (size,
    mtime_ns) of every changed path is equal at two checks `quiet_s` apart. The second check
    holds back a writer that pauses mid-file, and one whose appends the OS does not report
    (network filesystems, polling between writes). Time and stat are parameters, so tests can
    drive it with a fake clock.
    """

    def __init__(self, quiet_s: float,
                 stat: Callable[[str], tuple[int, int] | None] = file_stat):
        self.quiet_s = quiet_s
        self.stat = stat
        self._bursts: dict[Hashable, _Burst] = {}

    def add(self, key: Hashable, path: str, at: float) -> None:
        burst = self._bursts.setdefault(key, _Burst(set(), at))
        burst.paths.add(path)
        burst.last_event = max(burst.last_event, at)
        burst.snapshot = None  # any event restarts the wait

    def due(self, now: float) -> list[tuple[Hashable, list[str]]]:
        """Keys whose burst is over, each with the sorted paths it changed; they are forgotten."""
        ready = []
        for key, burst in list(self._bursts.items()):
            if now - burst.last_event < self.quiet_s:
                continue
            if burst.snapshot is not None and now - burst.checked_at < self.quiet_s:
                continue
            snapshot = {path: self.stat(path) for path in burst.paths}
            if snapshot == burst.snapshot:
                ready.append((key, sorted(burst.paths)))
                del self._bursts[key]
            else:  # first check, or a file still growing without events: check again later
                burst.snapshot, burst.checked_at = snapshot, now
        return ready


# --- one project ----------------------------------------------------------------------------

def raw_dir_of(project: Project) -> Path:
    """The data folder the config names; the default one while the config cannot be read."""
    try:
        return project.inside(load_config(project.config_file).data.raw_dir)
    except FactoryError:
        return project.inside(DataConfig.model_fields["raw_dir"].default)


@dataclass(eq=False)
class Watched:
    """A project under watch: its scope, and the content of its files at the last run."""

    project: Project
    scope: Scope
    fingerprint: dict[str, str | None] | None = None
    waiting: list[str] | None = None  # a trigger held back while another process has the lock
    raw_watch: Any = None             # the raw folder's watchdog ObservedWatch

    def rel(self, path: str) -> str:
        return Path(path).relative_to(self.project.root).as_posix()


def fingerprint(watched: Watched) -> dict[str, str | None]:
    """Content hashes of the watched files; an editor re-saving the same bytes leaves them equal.

    The project's hash cache skips re-reading files whose stat is unchanged.
    """
    cache = HashCache(watched.project.hash_cache_file)
    try:
        return {"raw_data": hash_path(watched.scope.raw_dir, cache),
                "config": hash_path(watched.project.config_file, cache)}
    finally:
        cache.save()


class _Forward:
    """Watchdog handler: relevant paths go onto the main thread's queue with the time they
    changed. Runs on the observer thread, so it only reads and enqueues."""

    def __init__(self, watched: Watched, events: queue.Queue):
        self.watched = watched
        self.events = events

    def dispatch(self, event: Any) -> None:
        for path in changed_paths(event, self.watched.scope):
            self.events.put((self.watched.project.root, path, time.monotonic()))


# --- signals --------------------------------------------------------------------------------

class Stopper:
    """SIGINT/SIGTERM. The first stops the watcher: no new run starts, and a running one ends
    after its current gate. The second, while a run is on, interrupts the running gate: the
    runner stops its script and the gate is recorded as failed with E_INTERRUPTED. Later ones
    are ignored so that the clean-up itself is never cut short."""

    def __init__(self) -> None:
        self.stopped_by: str | None = None
        self.count = 0
        self.in_run = False

    @property
    def requested(self) -> bool:
        return self.stopped_by is not None

    def __call__(self, signum: int, _frame: Any) -> None:
        self.count += 1
        if self.stopped_by is None:
            self.stopped_by = signal.Signals(signum).name
        elif self.count == 2 and self.in_run:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextmanager
    def running(self) -> Iterator[None]:
        self.in_run = True
        try:
            yield
        finally:
            self.in_run = False


# --- one run --------------------------------------------------------------------------------

class _Progress:
    """What a run got to: the gate it was about to start, and whether a stop cut it short."""

    def __init__(self, stopper: Stopper):
        self.stopper = stopper
        self.gate: str | None = None
        self.cut_short = False

    def should_stop(self, gate: str) -> bool:
        if self.stopper.requested:
            self.cut_short = True
            return True
        self.gate = gate
        return False


@dataclass
class Ending:
    outcome: str                      # passed | failed | interrupted | up_to_date | busy
    gates: list[dict] = field(default_factory=list)
    error: FactoryError | None = None


def _gates(results: list[dict]) -> list[dict]:
    return [{"gate": r["gate"], "outcome": r["outcome"]} for r in results]


def _finished(results: list[dict], progress: _Progress) -> Ending:
    if progress.cut_short:
        return Ending("interrupted", _gates(results))
    ran = any(r["outcome"] == "passed" for r in results)
    return Ending("passed" if ran else "up_to_date", _gates(results))


def _failed(error: FactoryError, progress: _Progress) -> Ending:
    if error.code == "E_LOCKED":
        return Ending("busy", [], error)
    gates = _gates(error.details.pop("completed", []))
    if progress.gate is not None:
        gates.append({"gate": progress.gate, "outcome": "failed"})
    return Ending("failed", gates, error)


def _interrupted(interrupt: KeyboardInterrupt, progress: _Progress) -> Ending:
    gates = _gates(getattr(interrupt, "completed", []))
    if progress.gate is None:
        return Ending("interrupted", gates)
    gates.append({"gate": progress.gate, "outcome": "interrupted"})
    return Ending("interrupted", gates, FactoryError(
        "E_INTERRUPTED", f"{progress.gate} was interrupted before it finished"))


def run_pipeline(watched: Watched, until: str | None, stopper: Stopper,
                 say: Callable[[str], None]) -> Ending:
    """One pipeline run, as far as gates pass (or up to `until`); every ending is returned, so
    one project's failure never stops the watcher."""
    progress = _Progress(stopper)
    try:
        ctx = pipeline.open_context(watched.project.root, say)
        with stopper.running():
            results = pipeline.run(ctx, None, until=until, should_stop=progress.should_stop)
        return _finished(results, progress)
    except FactoryError as error:
        return _failed(error, progress)
    except KeyboardInterrupt as interrupt:  # the second signal
        return _interrupted(interrupt, progress)
    except Exception as exc:  # a bug: reported with its traceback, and the watcher goes on
        traceback.print_exc()
        return _failed(FactoryError("E_INTERNAL", f"{type(exc).__name__}: {exc}"), progress)


def state_of(project: Project) -> str | None:
    try:
        return ProjectState.load(project).state
    except FactoryError:
        return None


def next_of(project: Project) -> tuple[str | None, dict]:
    """The project's state and next step after a run (what `factory next` says)."""
    try:
        step = standing.next_step(project.root)
    except FactoryError as error:
        return state_of(project), {"command": None, "reason": error.hint}
    return step["state"], {"command": step["command"], "reason": step["reason"]}


def report(watched: Watched, trigger: list[str], ending: Ending) -> dict:
    """The JSON line printed for a run (docs/watch.md)."""
    state, step = next_of(watched.project)
    return {"event": "run", "project": str(watched.project.root), "at": now(),
            "trigger": trigger, "outcome": ending.outcome, "state": state,
            "gates": ending.gates, "error": ending.error.to_dict() if ending.error else None,
            "next": step}


def log_entry(line: dict, before: str | None, inputs: dict) -> dict:
    """The event-log entry for a run: the keys every reader of events.jsonl uses, plus the
    watcher's own."""
    entry = {"at": line["at"], "kind": "watch",
             "gate": line["gates"][-1]["gate"] if line["gates"] else None,
             "from": before, "to": line["state"], "outcome": line["outcome"], "inputs": inputs,
             "pid": os.getpid(), "trigger": line["trigger"], "gates": line["gates"]}
    if line["error"]:
        entry["code"] = line["error"]["code"]
    return entry


def human(line: dict) -> str:
    gates = ", ".join(f"{g['gate']} {g['outcome']}" for g in line["gates"]) or "no gate ran"
    error = f"; {line['error']['code']}: {line['error']['message']}" if line["error"] else ""
    return (f"{line['at']}  {Path(line['project']).name}: {line['outcome']} ({gates}){error}; "
            f"state {line['state']}; next: {line['next']['command'] or '(nothing to run)'}")


# --- the watcher ----------------------------------------------------------------------------

def make_observer(poll: bool, debounce: float) -> Any:
    try:
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver
    except ImportError as exc:
        raise FactoryError("E_DEPENDENCY", f"factory watch needs watchdog ({exc})",
                           hint="pip install 'watchdog>=4'") from None
    if poll:  # polls at least every second, faster for a short debounce
        return PollingObserver(timeout=min(1.0, max(0.1, debounce / 2)))
    return Observer()


class Watcher:
    def __init__(self, dirs: list[str], args: Any, stopper: Stopper):
        self.args = args
        self.stopper = stopper
        self.events: queue.Queue = queue.Queue()
        self.debouncer = Debouncer(args.debounce)
        self.tick = max(0.02, min(0.1, args.debounce / 4))
        self.runs = 0
        projects = {p.root: p for p in map(Project.open, dirs)}  # the same project once
        self.watched = {root: Watched(p, Scope.of(p, raw_dir_of(p)))
                        for root, p in projects.items()}
        self.observer = make_observer(args.poll, args.debounce)
        self.handlers: dict[Path, _Forward] = {}
        self.at_start: list[Watched] = []

    # --- output ---
    def say(self, line: str) -> None:
        if not self.args.quiet:
            print(line, file=sys.stderr, flush=True)

    def emit(self, payload: dict) -> None:
        if self.args.json:
            print(json.dumps(payload, ensure_ascii=False, default=str), flush=True)
        elif payload["event"] == "run":
            print(human(payload), flush=True)
        else:
            print(f"watching {', '.join(payload['projects'])} (Ctrl-C stops)", flush=True)

    # --- observers ---
    def start(self) -> None:
        try:
            for watched in self.watched.values():
                handler = self.handlers[watched.project.root] = _Forward(watched, self.events)
                self.observer.schedule(handler, str(watched.project.root), recursive=False)
                self._watch_raw(watched)
            self.observer.start()
        except OSError as exc:
            raise FactoryError("E_WATCH", f"cannot watch the project folders: {exc}") from None
        for watched in self.watched.values():  # None if unreadable: its first change runs
            watched.fingerprint = self._safely(lambda: fingerprint(watched))
        # Decided before saying "watching": a change made after that line is a change, with
        # its trigger, not part of the start-up run.
        self.at_start = [w for w in self.watched.values()
                         if self._safely(lambda: wants_run_at_start(w, self.args.until))]
        self.emit({"event": "watching", "projects": [str(r) for r in self.watched]})

    def _watch_raw(self, watched: Watched) -> None:
        # A missing data folder is created: it is where data goes, and a folder that does not
        # exist cannot be watched.
        watched.scope.raw_dir.mkdir(parents=True, exist_ok=True)
        watched.raw_watch = self.observer.schedule(
            self.handlers[watched.project.root], str(watched.scope.raw_dir), recursive=True)

    def _follow_raw_dir(self, watched: Watched) -> None:
        """After a run: watch the folder the config names now (data.raw_dir may have changed)."""
        raw = raw_dir_of(watched.project)
        if raw != watched.scope.raw_dir:
            self.observer.unschedule(watched.raw_watch)
            watched.scope = Scope.of(watched.project, raw)
            self._watch_raw(watched)

    def stop(self) -> None:
        if self.observer.is_alive():
            self.observer.stop()
            self.observer.join(timeout=10)

    # --- the loop ---
    def loop(self) -> None:
        for watched in self.at_start:
            if not self.stopper.requested:
                self._safely(lambda: self.attempt(watched, []))
        while not self.stopper.requested:
            self._drain()
            for root, paths in self.debouncer.due(time.monotonic()):
                if self.stopper.requested:
                    break
                self._safely(lambda: self.on_due(self.watched[root], paths))
            self._retry_locked()

    @staticmethod
    def _safely(step: Callable[[], Any]) -> Any:
        # One project's unexpected error is printed with its traceback; the others go on.
        try:
            return step()
        except Exception:
            traceback.print_exc()
            return None

    def _drain(self) -> None:
        try:
            item = self.events.get(timeout=self.tick)
        except queue.Empty:
            return
        while True:
            self.debouncer.add(*item)
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return

    def on_due(self, watched: Watched, paths: list[str]) -> None:
        trigger = [watched.rel(p) for p in paths]
        if watched.waiting is not None:  # already waiting for the lock: one run covers both
            watched.waiting = sorted({*watched.waiting, *trigger})
            return
        try:
            current = fingerprint(watched)
        except OSError as exc:  # a file vanished mid-hash; its own event brings us back
            self.say(f"[{watched.project.root.name}] cannot hash the changes yet: {exc}")
            return
        if current == watched.fingerprint:
            self.say(f"[{watched.project.root.name}] {', '.join(trigger)}: same content as at "
                     f"the last run; nothing to do")
            return
        self.attempt(watched, trigger, current)

    def _retry_locked(self) -> None:
        # A trigger refused with E_LOCKED runs as soon as the other process lets go: checking
        # the flock is cheap, and its holder may be a long training run.
        for watched in self.watched.values():
            if self.stopper.requested:
                return
            if watched.waiting is not None and not ProjectLock(watched.project).is_held():
                trigger, watched.waiting = watched.waiting, None
                self._safely(lambda: self.attempt(watched, trigger))

    def attempt(self, watched: Watched, trigger: list[str],
                current: dict[str, str | None] | None = None) -> None:
        """Run the pipeline for one project and publish the outcome."""
        current = current or fingerprint(watched)
        before = state_of(watched.project)
        ending = run_pipeline(watched, self.args.until, self.stopper, self.say)
        if ending.outcome == "busy":
            watched.waiting = trigger
        else:
            watched.fingerprint = current  # the content this run saw
        line = report(watched, trigger, ending)
        if watched.project.root.is_dir():  # never recreate a project deleted under us
            log_event(watched.project, log_entry(line, before, current))
        self.emit(line)
        self.runs += 1
        self._follow_raw_dir(watched)


def wants_run_at_start(watched: Watched, until: str | None) -> bool:
    """Run once at start when the next step is a stale or pending gate within --until.

    A failed gate waits for a change (the same inputs would fail the same way), and so does a
    project another process holds. A project whose standing cannot be read (an invalid config)
    is run, so that its error is reported.
    """
    try:
        step = standing.next_step(watched.project.root)
    except FactoryError:
        return True
    gate = step.get("gate")
    if not step.get("command") or gate is None:
        return False
    if until is not None and GATES.index(gate) > GATES.index(until):
        return False
    return step["state"] != FAILED[gate]


def run_cli(args: Any) -> tuple[dict, dict]:
    """`factory watch`: runs until SIGINT or SIGTERM; returns (result, next) for the CLI."""
    dirs = args.dirs or [args.project]
    stopper = Stopper()
    with stopper.installed():
        watcher = Watcher(dirs, args, stopper)
        try:
            watcher.start()
            watcher.loop()
        finally:
            watcher.stop()
    projects = [str(root) for root in watcher.watched]
    command = "factory watch " + " ".join(projects)
    return ({"projects": projects, "runs": watcher.runs, "stopped_by": stopper.stopped_by},
            {"command": command, "reason": f"stopped by {stopper.stopped_by}; this starts it "
                                           "watching again"})
