"""The `factory` command.

Every command prints one JSON document with --json (shape in docs/cli-json.md) and otherwise a short
human summary; progress goes to stderr so stdout stays parseable. Commands that do not train
(init, status, next, log) never import torch or transformers: coding assistants call them in loops.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from factory.errors import EXIT_OK, FactoryError
from factory.project import CONFIG_FILE, Project
from factory.state import GATES, ProjectState, read_events

JSON_VERSION = 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    command = args.command or "help"
    if command == "help":
        parser.print_help()
        return EXIT_OK
    try:
        result, next_step = COMMANDS[command](args)
    except FactoryError as error:
        return emit_error(args, command, error)
    except KeyboardInterrupt:
        return emit_error(args, command, FactoryError(
            "E_INTERRUPTED", "interrupted; nothing was recorded as done"))
    except Exception as exc:  # never swallowed: reported with its traceback
        import traceback

        traceback.print_exc()
        return emit_error(args, command, FactoryError(
            "E_INTERNAL", f"{type(exc).__name__}: {exc}"))
    emit(args, {"ok": True, "command": command, "version": JSON_VERSION, "result": result,
                "next": next_step})
    return EXIT_OK


# --- output -----------------------------------------------------------------------------------

def _dumps(payload: dict) -> str:
    # `watch` prints one JSON line per run, so its closing document is one line too.
    indent = None if payload["command"] == "watch" else 2
    return json.dumps(payload, indent=indent, ensure_ascii=False, default=str)


def emit(args, payload: dict) -> None:
    if args.json:
        print(_dumps(payload), flush=True)
        return
    human = HUMAN.get(payload["command"])
    if human:
        human(payload["result"])
    nxt = payload.get("next") or {}
    if nxt.get("reason"):
        print(f"\nnext: {nxt.get('command') or '(nothing to run)'}  — {nxt['reason']}")


def emit_error(args, command: str, error: FactoryError) -> int:
    payload = {"ok": False, "command": command, "version": JSON_VERSION, "error": error.to_dict(),
               "next": {"command": None, "reason": error.hint}}
    if getattr(args, "json", False):
        print(_dumps(payload), flush=True)
    else:
        print(f"error {error.code}: {error.message}", file=sys.stderr)
        for problem in error.details.get("problems", [])[:10]:
            print(f"  {problem['file']}:{problem['line']}: {problem['field']}: expected "
                  f"{problem['expected']}, found {problem['found']}", file=sys.stderr)
        for field_error in error.details.get("errors", [])[:10]:
            line = f" (line {field_error['line']})" if "line" in field_error else ""
            print(f"  {field_error['field']}{line}: {field_error['expected']}", file=sys.stderr)
        if error.details.get("log"):
            print(f"  log: {error.details['log']}", file=sys.stderr)
        print(f"hint: {error.hint}", file=sys.stderr)
    return error.exit_code


def say_to_stderr(args):
    if args.quiet:
        return lambda line: None
    return lambda line: print(line, file=sys.stderr, flush=True)


# --- commands ---------------------------------------------------------------------------------

def cmd_init(args) -> tuple[dict, dict]:
    import shutil
    from importlib.resources import as_file, files

    target = Path(args.dir).resolve()
    if target.exists() and any(target.iterdir()):
        raise FactoryError("E_PROJECT_EXISTS", f"{target} is not empty",
                           details={"dir": str(target)})
    with as_file(files("project_template")) as template:
        shutil.copytree(template, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    config_path = target / CONFIG_FILE
    config = json.loads(config_path.read_text())
    config["name"] = args.name or target.name
    if getattr(args, "yaml", False):
        config_path = _as_yaml(config_path, config)
    else:
        config_path.write_text(json.dumps(config, indent=2) + "\n")
    return ({"project": str(target), "config": str(config_path)},
            {"command": f"factory -C {target} run baseline",
             "reason": "put data into data/raw/ and set model.name, then run the first gate"})


def _as_yaml(json_path: Path, config: dict) -> Path:
    """The template's config as factory.yaml instead: the same keys, for people who prefer it."""
    import yaml

    from factory.project import YAML_CONFIG_FILES

    config.pop("$schema", None)
    path = json_path.with_name(YAML_CONFIG_FILES[0])
    head = ("# model-factory project configuration: the same fields as training-config.json\n"
            "# (schema: schemas/training-config.schema.json).\n")
    path.write_text(head + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    json_path.unlink()
    return path


def cmd_status(args) -> tuple[dict, dict]:
    from factory import standing

    return standing.project_status(args.project)


def cmd_next(args) -> tuple[dict, dict]:
    from factory import standing

    step = standing.next_step(args.project)
    return step, {k: step[k] for k in ("command", "gate", "reason")}


def cmd_run(args) -> tuple[dict, dict]:
    from factory import pipeline

    if not args.all and not args.gate:
        raise FactoryError("E_USAGE", "name a gate or pass --all",
                           hint="`factory run --all` or `factory run <gate>`")
    if args.gate and args.gate not in GATES:
        raise FactoryError("E_UNKNOWN_GATE", f"no gate named {args.gate!r}")
    progress = sys.stderr.isatty() and not args.quiet and not args.json
    ctx = pipeline.open_context(args.project, say_to_stderr(args), refreeze=args.refreeze,
                                progress=progress)
    results = pipeline.run(ctx, None if args.all else [args.gate], force=args.force)
    st = ProjectState.load(ctx.project)
    step = pipeline.next_action(pipeline.inspect(ctx, st), st.state)
    ctx.cache.save()
    return {"state": st.state, "gates": results}, step


def cmd_check(args) -> tuple[dict, dict]:
    from factory import checklist
    from factory.config import load_config

    project = Project.open(args.project)
    try:
        config = load_config(project.config_file)
    except FactoryError as error:
        items = [checklist.Item("config", "fail", error.message, error.hint)]
    else:
        items = [checklist.Item("config", "pass", f"{project.config_file.name} is valid"),
                 *checklist.run(project, config)]
    shown = [i.to_dict() for i in items]
    failed = checklist.failed(items)
    if failed:
        raise FactoryError("E_PRECHECK", f"{len(failed)} pre-training check(s) failed: "
                                         + "; ".join(f"{i.name}: {i.detail}" for i in failed),
                           hint=failed[0].hint, details={"items": shown})
    warnings = sum(i.status == "warn" for i in items)
    return ({"items": shown, "warnings": warnings},
            {"command": "factory run finetune", "reason": "every pre-training check passed"
             + (f" ({warnings} warning(s))" if warnings else "")})


def cmd_profile(args) -> tuple[dict, dict]:
    from factory import hardware

    project = Project.open(args.project)
    machine = hardware.detect()
    profile = hardware.named(args.profile) if args.profile else hardware.choose(machine)
    # --apply never rewrites the config under a running gate; showing needs no lock.
    with _project_lock(project) if args.apply else contextlib.nullcontext():
        config, settings = hardware.plan(project, profile, machine)
        note = hardware.apply(project, profile, machine, settings) if args.apply else None
    changed = [s.field for s in settings if s.changes]
    result = {"project": str(project.root), "hardware": machine.to_dict(),
              "profile": {"name": profile.name, "source": "option" if args.profile else "detected",
                          "tier": hardware.tier(profile), "model_size": profile.model_size,
                          "example_models": list(profile.example_models)},
              "recommended_model": profile.recommended_model, "model_name": config.model.name,
              "settings": [s.to_dict() for s in settings], "changed": changed,
              "applied": note is not None, "note": note.model_dump() if note else None}
    return result, _profile_next(args, profile.name, changed, note is not None)


def _project_lock(project: Project):
    from factory.lock import ProjectLock

    return ProjectLock(project)


def _profile_next(args, profile: str, changed: list[str], applied: bool) -> dict:
    if changed and not applied:
        option = f" --profile {profile}" if args.profile else ""
        return {"command": f"factory profile --apply{option}",
                "reason": f"write {len(changed)} recommended setting(s) into "
                          f"training-config.json"}
    done = "now follows" if applied else "already follows"
    return {"command": "factory next",
            "reason": f"training-config.json {done} the {profile} profile; model.name is yours "
                      f"to pick"}


def cmd_promote(args) -> tuple[dict, dict]:
    from factory import registry

    project = Project.open(args.project)
    if not args.list:
        raise FactoryError("E_USAGE", "promote only lists promotions (--list)",
                           hint="A model is promoted by `factory run deploy`, and only with a "
                                "passing verdict of its own.")
    book = registry.read(project)
    rows = [{"id": p["id"], "current": p["id"] == book["current"],
             "checkpoint_hash": p["checkpoint_hash"], "promoted_at": p["promoted_at"],
             "metrics": p.get("metrics", {}), "outputs": p.get("outputs", {})}
            for p in book["promotions"]]
    return ({"current": book["current"], "promotions": rows, "history": book.get("history", [])},
            {"command": "factory rollback", "reason": "make the previous promotion current"}
            if len(rows) > 1 else {"command": "factory status", "reason": "see the project"})


def cmd_rollback(args) -> tuple[dict, dict]:
    from factory import registry
    from factory.lock import ProjectLock

    project = Project.open(args.project)
    with ProjectLock(project):
        promotion = registry.rollback(project, args.id)
    return ({"current": promotion["id"], "checkpoint_hash": promotion["checkpoint_hash"],
             "outputs": promotion.get("outputs", {})},
            {"command": "factory run evaluate",
             "reason": f"candidates are now held to {promotion['id']}"})


def cmd_push(args) -> tuple[dict, dict]:
    from agents import push
    from factory import pipeline
    from factory.lock import ProjectLock

    ctx = pipeline.open_context(args.project, say_to_stderr(args))
    push.hub_settings(ctx.config)
    promotion = push.resolve_promotion(ctx.project, args.promotion)
    if args.dry_run:
        plan = push.dry_run(ctx, promotion)
        again = "factory push" + (f" --promotion {args.promotion}" if args.promotion else "")
        if plan["token"] is None:
            return plan, {"command": None, "reason": f"set HF_TOKEN or run `hf auth login`, "
                                                     f"then `{again}`"}
        return plan, {"command": again, "reason": f"upload {len(plan['files'])} files "
                                                  f"({plan['bytes']} bytes) to "
                                                  f"{plan['repo_id']}@{plan['revision']}"}
    with ProjectLock(ctx.project) as lock:
        ctx.lock_fd = lock.fd
        record = push.run_for_promotion(ctx, promotion)
        push.remember(ctx.project, promotion, record)
    checked = "verified by download and from_pretrained" if record["verified"] \
        else "not verified (deploy.hub.verify is false)"
    return record, {"command": "factory status",
                    "reason": f"{record['repo_id']}@{record['revision']} is at commit "
                              f"{record['commit'][:12]}, {checked}"}


def cmd_cluster(args) -> tuple[dict, dict]:
    from factory import pipeline

    job = pipeline.cluster_job(pipeline.open_context(args.project, say_to_stderr(args)))
    return job, {"command": job["submit"],
                 "reason": "submit it from the project directory; when the job has finished, "
                           "`factory run finetune` records its run without training again"}


def cmd_label(args) -> tuple[dict, dict]:
    from factory import labels
    from factory.config import load_config

    project = Project.open(args.project)
    config = load_config(project.config_file)
    path = labels.labels_path(project, config.data.raw_dir)
    labelled = labels.read_labels(path)
    items = (labels.from_file(project, args.source) if args.source
             else labels.from_raw(project, config.data))
    todo = labels.pending(items, labelled)
    reads_answers = not args.list and (not args.json or not sys.stdin.isatty())
    if args.json and reads_answers:
        answers = labels.parse_answers(sys.stdin.read().splitlines(),
                                       {i.id: i for i in todo}, labelled)
        with _project_lock(project):
            for item, good, note in answers:
                labels.record(path, item, good, note)
        recorded = {"good": sum(g for _, g, _ in answers),
                    "bad": sum(not g for _, g, _ in answers), "skipped": 0}
    elif reads_answers:
        recorded = labels.session(todo, path, ask=input, show=print,
                                  lock=lambda: _project_lock(project))
    else:
        recorded = {"good": 0, "bad": 0, "skipped": 0}
    labelled = labels.read_labels(path)
    left = [i for i in todo if i.id not in labelled]
    result = {"labels_file": project.rel(path), "recorded": recorded,
              "labelled": labels.counts(labelled), "pending": len(left),
              "items": [i.to_dict() for i in left[:args.limit]]}
    if left:
        return result, {"command": "factory label", "reason": f"{len(left)} item(s) still "
                        "have no label"}
    return result, {"command": "factory run --all", "reason": "every item is labelled; the "
                    "labels are KTO records in the raw data (and can be a learned reward's "
                    "examples)"}


def cmd_log(args) -> tuple[dict, dict]:
    project = Project.open(args.project)
    events = read_events(project, args.limit)
    return {"events": events}, {"command": "factory status", "reason": "see where things stand"}


def cmd_watch(args) -> tuple[dict, dict]:
    from factory import watch  # watchdog only for this command

    return watch.run_cli(args)


def cmd_ui(args) -> tuple[dict, dict]:
    from factory import dashboard  # fastapi and uvicorn only for this command

    return dashboard.run_cli(args)


def cmd_demo(args) -> tuple[dict, dict]:
    from factory import demo

    target = Path(args.dir).resolve()
    cmd_init(argparse.Namespace(dir=str(target), name=args.name or "demo"))
    info = demo.prepare(target, say=say_to_stderr(args))
    return ({"project": str(target), **info},
            {"command": f"factory -C {target} run --all", "reason": "run every gate"})


def cmd_serve(args) -> tuple[dict, dict]:
    from factory.runtime import serving  # torch, fastapi and uvicorn only once it loads the model

    target = serving.resolve(args.project, model=args.model, promotion=args.promotion)
    result = serving.serve(target, args.host, args.port, max_new_tokens=args.max_new_tokens,
                           log_level="warning" if args.quiet else "info")
    return result, {"command": "factory serve",
                    "reason": f"the server stopped ({result['stopped_by'] or 'on its own'}); "
                              "this starts it again"}


COMMANDS = {"init": cmd_init, "status": cmd_status, "next": cmd_next, "run": cmd_run,
            "log": cmd_log, "demo": cmd_demo, "check": cmd_check, "profile": cmd_profile,
            "promote": cmd_promote, "rollback": cmd_rollback, "serve": cmd_serve,
            "push": cmd_push, "watch": cmd_watch, "ui": cmd_ui, "cluster": cmd_cluster,
            "label": cmd_label}


# --- human output -----------------------------------------------------------------------------

def human_status(result: dict) -> None:
    print(f"project {result['name']}  ({result['project']})")
    print(f"state   {result['state']}")
    for gate in result["gates"]:
        extra = ""
        if gate["status"] == "stale":
            extra = f"  changed: {', '.join(gate['changed'])}"
        elif gate.get("error"):
            extra = f"  {gate['error']['code']}: {gate['error']['message']}"
        elif gate["summary"]:
            extra = "  " + ", ".join(f"{k}={_fmt(v)}" for k, v in gate["summary"].items()
                                     if not isinstance(v, (dict, list))
                                     and k not in ("reason", "report"))
        print(f"  {gate['name']:<9} {gate['status']:<8}{extra}")
    if result.get("data"):
        print(f"data    {result['data']['summary']}  ({result['data']['human']})")
    verdict = result.get("eval")
    if verdict:
        print(f"eval    {'PASSED' if verdict['passed'] else 'FAILED'}: {verdict['reason']}  "
              f"({verdict['report']}, {verdict['plot']})")
    training = result.get("training")
    if training and (training.get("running") or training.get("interrupted")):
        state = "running" if training["running"] else "interrupted"
        print(f"training {state}: step {training['step']}/{training['total_steps']}, "
              f"loss {_fmt(training['loss'])}, eta {_fmt(training.get('eta_seconds'))}s")
    if result.get("lock"):
        print(f"locked by pid {result['lock'].get('pid')} ({result['lock'].get('command')})")


def human_run(result: dict) -> None:
    for gate in result["gates"]:
        print(f"{gate['gate']:<9} {gate['outcome']}")
    print(f"state: {result['state']}")


def human_log(result: dict) -> None:
    for e in result["events"]:
        extra = f" {e['code']}" if e.get("code") else ""
        print(f"{e['at']}  {e.get('gate') or '-':<9} {e['from']} -> {e['to']}  "
              f"{e.get('outcome')}{extra}")


def human_check(result: dict) -> None:
    for item in result["items"]:
        print(f"  [{item['status']}] {item['name']:<12} {item['detail']}"
              + (f"\n         hint: {item['hint']}" if item["status"] != "pass" and item["hint"]
                 else ""))


def human_profile(result: dict) -> None:
    profile = result["profile"]
    source = "--profile" if profile["source"] == "option" else "detected"
    print(f"hardware {result['hardware']['summary']}")
    print(f"profile  {profile['name']} ({profile['tier']}; {source})")
    print(f"model    {result['recommended_model']}; model.name stays {result['model_name']}")
    print(f"  {'field':<40} {'current':<10} recommended")
    for s in result["settings"]:
        mark = "  *" if s["changes"] else ""
        current, recommended = (json.dumps(v) if isinstance(v, bool) else _fmt(v)
                                for v in (s["current"], s["recommended"]))
        print(f"  {s['field']:<40} {current:<10} {recommended}{mark}")
    if result["applied"]:
        print(f"applied: {len(result['changed'])} field(s) changed in training-config.json")


def human_promote(result: dict) -> None:
    if not result["promotions"]:
        print("no promotions yet")
    for p in result["promotions"]:
        marker = "*" if p["current"] else " "
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in list(p["metrics"].items())[:3])
        print(f"{marker} {p['id']:<16} {p['promoted_at']}  {shown}")


def human_simple(result: dict) -> None:
    for key, value in result.items():
        print(f"{key}: {value}")


def human_label(result: dict) -> None:
    r, total = result["recorded"], result["labelled"]
    print(f"\nrecorded {r['good']} good, {r['bad']} bad ({r['skipped']} skipped) in "
          f"{result['labels_file']}; {total['good']} good and {total['bad']} bad in all; "
          f"{result['pending']} still unlabelled")


def human_cluster(result: dict) -> None:
    print(f"wrote {result['script']} ({result['strategy']}, {result['nodes']} node(s), "
          f"{result['processes']} process(es))")


def human_push(result: dict) -> None:
    for f in result["files"]:
        print(f"  {f['path_in_repo']:<48} {f['bytes']:>12,}  sha256:{f['sha256'][:12]}")
    if result.get("dry_run"):
        token = result["token"] or "none found"
        print(f"dry run: {len(result['files'])} files, {result['bytes']:,} bytes to "
              f"{result['repo_id']}@{result['revision']}; token: {token}; nothing was sent")
    else:
        print(f"pushed {result['commit_url']}  verified: {result['verified']}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


HUMAN = {"status": human_status, "run": human_run, "log": human_log, "init": human_simple,
         "demo": human_simple, "next": lambda r: None, "check": human_check,
         "profile": human_profile, "promote": human_promote, "rollback": human_simple,
         "serve": human_simple, "push": human_push, "watch": human_simple, "ui": human_simple,
         "label": human_label, "cluster": human_cluster}


# --- parser -----------------------------------------------------------------------------------

def _common(defaults: bool) -> argparse.ArgumentParser:
    # Sub-commands repeat the global options with suppressed defaults, so `factory --json status`
    # and `factory status --json` both work without the sub-parser resetting the flag.
    common = argparse.ArgumentParser(add_help=False)
    unset = {} if defaults else {"default": argparse.SUPPRESS}
    common.add_argument("--json", action="store_true", help="print one JSON document", **unset)
    common.add_argument("-C", "--project", help="project directory (default: .)",
                        **({"default": "."} if defaults else unset))
    common.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr",
                        **unset)
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common(defaults=False)
    parser = argparse.ArgumentParser(
        prog="factory", parents=[_common(defaults=True)],
        description="Move a project through baseline → format → finetune → evaluate → deploy.")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("init", parents=[common], help="create a project from the template")
    p.add_argument("dir")
    p.add_argument("--name")
    p.add_argument("--yaml", action="store_true",
                   help="write the config as factory.yaml instead of training-config.json")
    sub.add_parser("status", parents=[common], help="where the project stands")
    sub.add_parser("next", parents=[common], help="the next command to run")
    p = sub.add_parser("run", parents=[common], help="run a gate, or --all")
    p.add_argument("gate", nargs="?", help=", ".join(GATES))
    p.add_argument("--all", action="store_true", help="advance as far as gates pass")
    p.add_argument("--force", action="store_true", help="run even if up to date")
    p.add_argument("--refreeze", action="store_true",
                   help="baseline: draw the eval split again (invalidates every verdict)")
    sub.add_parser("check", parents=[common], help="the pre-training checklist (finetune runs "
                                                   "it too)")
    p = sub.add_parser("profile", parents=[common],
                       help="hardware profile: recommended model size and training settings")
    p.add_argument("--apply", action="store_true",
                   help="write the recommended settings into training-config.json")
    p.add_argument("--profile", metavar="NAME",
                   help="use this profile instead of the detected one (see docs/training.md)")
    p = sub.add_parser("promote", parents=[common], help="the promotion registry (--list)")
    p.add_argument("--list", action="store_true", help="every promotion, the current one marked")
    p = sub.add_parser("rollback", parents=[common],
                       help="make an earlier promotion current (default: the previous one)")
    p.add_argument("id", nargs="?", help="the promotion to restore, e.g. v1-1a2b3c4d")
    p = sub.add_parser("log", parents=[common], help="the project's event log")
    p.add_argument("--limit", type=int, default=None)
    p = sub.add_parser("demo", parents=[common], help="create the demo project (tiny model)")
    p.add_argument("dir")
    p.add_argument("--name")
    p = sub.add_parser("push", parents=[common],
                       help="upload a promoted model to the Hugging Face Hub (deploy.hub)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the exact upload plan; send nothing")
    p.add_argument("--promotion", metavar="ID", help="push this promotion (default: the current)")
    p = sub.add_parser("serve", parents=[common],
                       help="an OpenAI-compatible chat endpoint for the promoted model")
    p.add_argument("--model", metavar="DIR",
                   help="serve this model or adapter folder instead (inside the project, or an "
                        "absolute path)")
    p.add_argument("--promotion", metavar="ID", help="serve this promotion (default: the current)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; there is no authentication)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--max-new-tokens", type=int, default=256, metavar="N",
                   help="most tokens per answer; a larger max_tokens is lowered to it")
    p = sub.add_parser("watch", parents=[common],
                       help="re-run the pipeline whenever a project's data or config changes")
    p.add_argument("dirs", nargs="*", metavar="DIR",
                   help="project directories to watch (default: the -C project, i.e. .)")
    p.add_argument("--debounce", type=float, default=2.0, metavar="S",
                   help="wait until nothing has changed for S seconds, then run once "
                        "(default 2)")
    p.add_argument("--until", choices=GATES, metavar="GATE",
                   help="run gates up to and including this one (default: all five)")
    p.add_argument("--poll", action="store_true",
                   help="poll the filesystem instead of OS events (network drives, some "
                        "container mounts)")
    p = sub.add_parser("label", parents=[common],
                       help="label agent traces or completions good/bad, one at a time "
                            "(--json: read {\"id\", \"label\"} lines from stdin)")
    p.add_argument("--from", dest="source", metavar="FILE",
                   help="label completions from this JSONL file (prompt, completion) instead "
                        "of the raw data's unlabelled traces")
    p.add_argument("--list", action="store_true",
                   help="only show what is still unlabelled; read no answers")
    p.add_argument("--limit", type=int, default=20, help="items shown in the result (20)")
    sub.add_parser("cluster", parents=[common],
                   help="write scripts/finetune.sbatch: the finetune run as a SLURM job "
                        "(training-config.json: distributed, distributed.slurm)")
    p = sub.add_parser("ui", parents=[common],
                       help="a local dashboard: gates, live training, loss curve, verdict")
    p.add_argument("dir", nargs="?", help="project directory (default: the -C project)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; there is no authentication)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free one)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
