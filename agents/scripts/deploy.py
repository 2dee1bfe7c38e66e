"""Write the promoted model's outputs, written by `factory run deploy`.

Re-run by hand from the project directory (the factory only runs it for a checkpoint whose own
verdict passed):

    python scripts/deploy.py --config scripts/deploy.json

Outputs under `out_dir`:
  adapter/  the LoRA adapter exactly as PEFT saved it, with the tokenizer and chat template;
  merged/   the adapter merged into the base weights, loadable by
            AutoModelForCausalLM.from_pretrained(out_dir + "/merged") unchanged.

Before anything counts as written, a parity check greedily decodes a few eval prompts with the
adapter and with the merged weights reloaded from disk; any disagreement fails the deploy, which
catches lost chat templates and merge drift before a user does.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

from factory.runtime.report import ScriptError, fail, load_config, project_root


def main(config_path: str) -> int:
    cfg = load_config(config_path)
    root = project_root(config_path)
    try:
        deploy(cfg, root)
    except ScriptError as error:
        return fail(root, "deploy", error)
    return 0


def deploy(cfg: dict, root: Path) -> None:
    from factory import atomic
    from factory.runtime import models, scoring

    out_dir = root / cfg["out_dir"]
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    # 1. The adapter, as trained.
    shutil.copytree(root / cfg["adapter"], staging / "adapter")

    # 2. Merged weights, saved and then reloaded, as a user would load them.
    model, tokenizer = models.load(cfg["model"], root, adapter=cfg["adapter"])
    probes = read_probes(root / cfg["eval_file"], cfg["parity_probes"])
    expected = [scoring.greedy_answer(model, tokenizer, p, cfg["max_new_tokens"]) for p in probes]
    if "merged" in cfg["outputs"]:
        merged = model.merge_and_unload()
        merged.save_pretrained(staging / "merged")
        tokenizer.save_pretrained(staging / "merged")
        reloaded, tokenizer = models.load({**cfg["model"], "source": str(staging / "merged"),
                                           "local": False, "revision": None}, root)
        got = [scoring.greedy_answer(reloaded, tokenizer, p, cfg["max_new_tokens"]) for p in probes]
        mismatches = [i for i, (a, b) in enumerate(zip(expected, got)) if a != b]
        if mismatches:
            raise ScriptError("E_PARITY",
                              f"merged model disagrees with the adapter on {len(mismatches)} of "
                              f"{len(probes)} parity probes",
                              hint="Check the base model and adapter; do not ship the merge.")
        print(f"parity: merged weights match the adapter on {len(probes)} probes")
    if "adapter" not in cfg["outputs"]:
        shutil.rmtree(staging / "adapter")

    # 3. Only a complete output directory ever appears under its final name.
    atomic.write_json(staging / "deploy-manifest.json", {
        "outputs": sorted(p.name for p in staging.iterdir() if p.is_dir()),
        "parity_probes": len(probes),
        "parity_outputs": expected,
    })
    atomic.replace_dir(staging, out_dir)
    print(f"deployed to {cfg['out_dir']}")


def read_probes(path: Path, count: int) -> list[list[dict]]:
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [row["messages"] for row in rows[:count]]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="scripts/deploy.json")
    sys.exit(main(parser.parse_args().config))
