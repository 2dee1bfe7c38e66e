"""Push a promoted model to the Hugging Face Hub, written by `factory push` (and by deploy when
deploy.outputs lists "hub").

Re-run by hand from the project directory, with a token in HF_TOKEN or after `hf auth login`:

    python scripts/push.py --config scripts/push.json

It prints the upload plan first (every file, its place in the repository, size and sha256) and
refuses before sending anything when a file a loadable repository needs is missing. Then it uploads
everything in one commit to `repo_id` at `revision`. With `verify`, it lists the remote files
against the plan, downloads the repository again and loads it with from_pretrained. The record
(commit, files, verified) goes to `record` (.factory/pushes/<promotion>.json).

The token is read by huggingface_hub alone, from the environment or its login file; this script
never sees, prints or writes it. HF_ENDPOINT points huggingface_hub at another Hub.
"""
import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from factory.runtime.report import ScriptError, fail, load_config, project_root


def main(config_path: str) -> int:
    cfg = load_config(config_path)
    root = project_root(config_path)
    try:
        push(cfg, root)
    except ScriptError as error:
        return fail(root, "push", error)
    return 0


def push(cfg: dict, root: Path) -> None:
    from factory import atomic
    from factory.runtime import hub

    deployed = root / cfg["deployed_dir"]
    plan = hub.plan(deployed, cfg["push"], cfg["repo_id"], cfg["revision"], cfg["private"],
                    root=root)
    print_plan(plan)
    record = hub.push(plan, root, verify=cfg["verify"], base_model=cfg.get("model"),
                      message=f"Upload {cfg['promotion']} from model-factory")
    record = {"promotion": cfg["promotion"], **record,
              "pushed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic.write_json(root / cfg["record"], record)
    checked = f"verified: {', '.join(record['loaded'])}" if record["verified"] else "not verified"
    print(f"pushed commit {record['commit']} to {record['repo_id']}@{record['revision']} "
          f"({checked}); record: {cfg['record']}")


def print_plan(plan: dict) -> None:
    where = {"HF_TOKEN": "token from HF_TOKEN", "hf auth login": "token from `hf auth login`"}
    print(f"plan: {len(plan['files'])} files, {plan['bytes']} bytes to {plan['repo_id']}@"
          f"{plan['revision']} ({'private' if plan['private'] else 'public'}; "
          f"{where.get(plan['token'], 'no token found')})")
    for f in plan["files"]:
        print(f"  {f['path_in_repo']:<48} {f['bytes']:>12}  sha256:{f['sha256'][:16]}  "
              f"<- {f['local']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="scripts/push.json")
    sys.exit(main(parser.parse_args().config))
