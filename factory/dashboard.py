"""`factory ui`: a live, read-only dashboard of one project in the browser.

    GET /                 the page (factory/dashboard.html: HTML, CSS and JS in one file)
    GET /api/status       {"result", "next"}: what `factory status --json` says
    GET /api/training     {"status", "history"}: training-status.json and its logged steps
    GET /api/verdict      {"verdict", "plot"}: metrics/verdict.json (404, verdict null: none yet)
    GET /reports/{name}   a PNG directly inside reports/ (the training and eval plots)

Nothing else of the project is reachable, and nothing is ever written. It binds 127.0.0.1 unless
told otherwise, and on loopback it answers only requests addressed to a loopback name, so a web
page in the same browser cannot read it through a DNS-rebound hostname. Serving (binding, the
ready line, stopping on SIGINT/SIGTERM) is `runtime.serving`'s, shared with `factory serve`.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

from factory import atomic, standing
from factory.errors import FactoryError
from factory.project import Project

HISTORY_POINTS = 500  # the loss curve a page polls every second stays small however long the run
STATUS_REUSE_S = 1.0  # several open tabs share one `factory status` a second
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
# The page loads nothing from anywhere but this server (and runs only its own inline script).
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")


# --- what the routes answer (plain functions: the tests call them too) --------------------------

def training(project: Project) -> dict:
    return {"status": finite(standing.training_status(project)),
            "history": finite(thin(atomic.read_appended(project.training_log_file),
                                   HISTORY_POINTS))}


def verdict(project: Project) -> dict | None:
    """The verdict and the URL of its delta plot; None when evaluate has not judged yet."""
    found = atomic.read_json(project.metrics_dir / "verdict.json")
    if found is None:
        return None
    plot = report_png(project, "eval-deltas.png")
    # The mtime in the URL makes the browser fetch a plot redrawn by the next evaluate.
    url = f"/reports/{plot.name}?v={plot.stat().st_mtime_ns}" if plot else None
    return {"verdict": finite(found), "plot": url}


def report_png(project: Project, name: str) -> Path | None:
    """reports/<name> when it is a PNG file right inside reports/, after resolving links."""
    if "/" in name or "\\" in name or not name.endswith(".png"):
        return None
    try:
        reports = project.inside("reports")
    except FactoryError:
        return None  # reports/ itself links out of the project
    path = (reports / name).resolve()
    if path.parent != reports or not path.is_file():
        return None
    with open(path, "rb") as fh:
        return path if fh.read(8) == b"\x89PNG\r\n\x1a\n" else None


def thin(rows: list[dict], limit: int) -> list[dict]:
    """At most `limit` rows, evenly spaced, always keeping the last (the current step)."""
    if len(rows) <= limit:
        return rows
    stride = math.ceil(len(rows) / limit)
    kept = rows[::stride]
    return kept if kept[-1] is rows[-1] else kept[:limit - 1] + [rows[-1]]


def finite(value: Any) -> Any:
    """NaN and infinity as null: browsers' JSON.parse refuses them (a diverged loss is one)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value




class Recent:
    """Call `compute` at most once per `seconds`, one caller at a time; the rest share its answer.

    Errors are not kept: the next caller tries again."""

    def __init__(self, compute: Callable[[], Any], seconds: float):
        self.compute, self.seconds = compute, seconds
        self._lock = threading.Lock()
        self._at, self._value = -math.inf, None

    def __call__(self) -> Any:
        with self._lock:
            if time.monotonic() - self._at >= self.seconds:
                self._value, self._at = self.compute(), time.monotonic()
            return self._value


# --- the app ------------------------------------------------------------------------------------

def build_app(project: Project, hosts: set[str] | None = LOOPBACK_NAMES):
    """The dashboard of `project`; `hosts`: the Host names it answers (None: any)."""
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

    app = FastAPI(title="model-factory dashboard", docs_url=None, redoc_url=None,
                  openapi_url=None)
    page = files("factory").joinpath("dashboard.html").read_text(encoding="utf-8")
    status = Recent(lambda: standing.project_status(project.root), STATUS_REUSE_S)

    @app.middleware("http")
    async def guard(request, call_next):
        if hosts is not None and _hostname(request.headers.get("host", "")) not in hosts:
            return JSONResponse({"error": "this dashboard answers only loopback names"},
                                status_code=400)
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP})

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)  # browsers ask; there is none, and that is no error

    # Plain `def` routes run in FastAPI's threadpool: status hashes files, which blocks.
    @app.get("/api/status")
    def api_status():
        try:
            result, next_step = status()
        except FactoryError as error:  # e.g. a config being edited: shown, and polled again
            return JSONResponse({"result": None, "error": error.to_dict(),
                                 "next": {"command": None, "reason": error.hint}},
                                status_code=503)
        return {"result": finite(result), "next": next_step}

    @app.get("/api/training")
    def api_training():
        return training(project)

    @app.get("/api/verdict")
    def api_verdict():
        found = verdict(project)
        return found if found else JSONResponse({"verdict": None, "plot": None},
                                                status_code=404)

    @app.get("/reports/{name}")
    def report(name: str):
        path = report_png(project, name)
        if path is None:
            return JSONResponse({"error": "no such report image"}, status_code=404)
        return FileResponse(path, media_type="image/png")

    return app


def _hostname(host_header: str) -> str:
    """"127.0.0.1:8765" → "127.0.0.1", "[::1]:8765" → "::1"."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


# --- running ------------------------------------------------------------------------------------

def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def serve(project: Project, host: str = "127.0.0.1", port: int = 8765, *,
          say: Callable[[str], None] = _stderr) -> dict:
    """Listen, print `dashboard at <url> (project <dir>)` once listening, run until
    SIGINT/SIGTERM. Returns the project, the URL and which signal stopped it."""
    from factory.runtime import serving

    _require("fastapi", "uvicorn")
    loopback = host in serving.LOOPBACK
    if not loopback:
        say(f"warning: binding {host}: anyone who can reach this address can read the "
            "project's status, metrics and plots; the dashboard has no authentication")
    sock = _bind(serving, host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}/"
    try:
        app = build_app(project, LOOPBACK_NAMES if loopback else None)
        # Polled every second: request lines would bury everything else on stderr.
        stopped_by = serving.run_app(app, sock, lambda: say(f"dashboard at {url} "
                                                          f"(project {project.root})"),
                                  "warning")
    finally:
        sock.close()
    return {"project": str(project.root), "url": url, "stopped_by": stopped_by}


def _require(*packages: str) -> None:
    from importlib.util import find_spec

    missing = [p for p in packages if find_spec(p) is None]
    if missing:
        raise FactoryError("E_DEPENDENCY", f"factory ui needs {', '.join(missing)}: "
                                           "pip install 'model-factory[train]'",
                           details={"missing": missing})


def _bind(serving, host: str, port: int):
    try:
        return serving.bind(host, port)
    except FactoryError as error:  # serve's hint is about models; this one is about the port
        raise FactoryError(error.code, error.message, details=error.details,
                           hint="Pick a free port with --port (0: any free one); the "
                                "dashboard binds 127.0.0.1 unless --host says otherwise.") \
            from None


def run_cli(args) -> tuple[dict, dict]:
    """`factory ui [DIR] [--host H] [--port P]`: (result, next) once the server has stopped."""
    project = Project.open(args.dir or args.project)
    result = serve(project, args.host, args.port)
    return result, {"command": f"factory ui {project.root}",
                    "reason": f"the dashboard stopped ({result['stopped_by'] or 'on its own'}); "
                              "this starts it again"}
