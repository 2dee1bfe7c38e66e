"""Write the promoted model's outputs, written by `factory run deploy`.

Re-run by hand from the project directory (the factory only runs it for a checkpoint whose own
verdict passed):

    python scripts/deploy.py --config scripts/deploy.json

Outputs under `out_dir`:
  adapter/  the LoRA adapter exactly as PEFT saved it, with the tokenizer and chat template;
  merged/   the adapter merged into the base weights, loadable by
            AutoModelForCausalLM.from_pretrained(out_dir + "/merged") unchanged;
  gguf/     one <name>-<TYPE>.gguf per configured type, with the tokenizer and chat template;
  ollama/   a Modelfile over one of the GGUF files (and `ollama create` run, if ollama is here).

Before anything counts as written, a parity check greedily decodes a few eval prompts with the
adapter and with the merged weights reloaded from disk; any disagreement fails the deploy, which
catches lost chat templates and merge drift before a user does. Each GGUF file is read back: its
vocabulary, merges, special ids and template must equal the tokenizer's, every tensor must be
within its type's error, and its greedy replies must agree with the merged model's on enough
probes (decoded from the file's own tensors, and by llama.cpp where llama-cpp-python is here).
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

    # 3. GGUF files, each read back and checked before it counts.
    gguf_files = []
    if "gguf" in cfg["outputs"]:
        (staging / "gguf").mkdir()
        gguf_files = [export_gguf(cfg, staging, quant, probes, expected)
                      for quant in cfg["gguf"]["quantizations"]]

    # 4. An Ollama Modelfile whose template renders what the chat template renders.
    modelfile = write_modelfile(cfg, staging, tokenizer) if "ollama" in cfg["outputs"] else None

    # 5. Only a complete output directory ever appears under its final name.
    atomic.write_json(staging / "deploy-manifest.json", {
        "outputs": sorted(p.name for p in staging.iterdir() if p.is_dir()),
        "parity_probes": len(probes),
        "parity_outputs": expected,
        "gguf": gguf_files,
        "ollama": modelfile,
    })
    atomic.replace_dir(staging, out_dir)
    print(f"deployed to {cfg['out_dir']}")

    # 6. Register with Ollama last: it reads the files from their final place.
    if modelfile and cfg["ollama"]["create"]:
        from factory.runtime import ollama

        done = ollama.create(modelfile["name"], out_dir / "ollama" / "Modelfile")
        print(f"ollama: {done['command']}" + ("" if done["ran"] else f" ({done['reason']})"))


def export_gguf(cfg: dict, staging: Path, quant: str, probes: list, expected: list[str]) -> dict:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from factory.runtime import gguf_check, gguf_export, scoring

    merged_dir = staging / "merged"
    path = staging / "gguf" / f"{cfg['name']}-{quant}.gguf"
    written = gguf_export.write(merged_dir, path, quant, cfg["name"])
    config, tokenizer = AutoConfig.from_pretrained(merged_dir), AutoTokenizer.from_pretrained(
        merged_dir)
    vocab = gguf_export.vocabulary(tokenizer, config.vocab_size, merged_dir / "tokenizer.json")
    read = gguf_export.read_back(path, config)
    original = AutoModelForCausalLM.from_pretrained(merged_dir).state_dict()
    tensor_problems, worst = gguf_check.tensor_problems(read, original)
    problems = gguf_check.metadata_problems(read, vocab) + tensor_problems
    if problems:
        raise ScriptError("E_PARITY", f"{path.name} does not hold the merged model: "
                                      f"{'; '.join(problems[:5])}", problems=problems)
    floor = cfg["gguf"]["min_agreement"]
    floor = gguf_check.MIN_AGREEMENT[quant] if floor is None else floor
    model = gguf_check.model_from(read, merged_dir)
    got = [scoring.greedy_answer(model, tokenizer, p, cfg["max_new_tokens"]) for p in probes]
    result = {**written, "max_tensor_error": worst, "min_agreement": floor,
              "agreement": gguf_check.agreement(expected, got)}
    if gguf_check.llama_cpp_available():
        answers, mismatched = gguf_check.llama_cpp_answers(path, tokenizer, probes,
                                                           cfg["max_new_tokens"], vocab.add_bos)
        result["llama_cpp"] = {"agreement": gguf_check.agreement(expected, answers),
                               "tokenization_mismatches": mismatched}
    runs = [result["agreement"], result.get("llama_cpp", {}).get("agreement", 1.0)]
    if min(runs) < floor or result.get("llama_cpp", {}).get("tokenization_mismatches"):
        raise ScriptError("E_PARITY", f"{path.name} agrees with the merged model on too few "
                                      f"probes ({result}); at least {floor} is required",
                          hint="Use a less lossy type (Q8_0, F16) or set "
                               "deploy.gguf.min_agreement.", gguf=result)
    checked = "and llama.cpp " if "llama_cpp" in result else ""
    print(f"gguf: {path.name} ({written['bytes']} bytes): tokenizer, template and tensors match; "
          f"greedy agreement {result['agreement']:.2f} {checked}(need {floor})")
    return result


def write_modelfile(cfg: dict, staging: Path, tokenizer) -> dict:
    from factory import atomic
    from factory.runtime import ollama

    settings = cfg["ollama"]
    quant = settings["quantization"] or cfg["gguf"]["quantizations"][0]
    from factory.runtime.gguf_export import adds_bos

    wrappers = ollama.measure(tokenizer)
    checked = ollama.verify(tokenizer, wrappers)
    if adds_bos(tokenizer):
        wrappers = ollama.without_bos(wrappers, tokenizer.bos_token)
    template = settings["template"] or ollama.go_template(wrappers)
    for value, what in ((template, "the template"), (settings["system"] or "", "the system")):
        ollama.check_literal(value, what)
    text = ollama.modelfile(f"../gguf/{cfg['name']}-{quant}.gguf", template, wrappers.stops,
                            settings["system"], settings["parameters"])
    atomic.write_text(staging / "ollama" / "Modelfile", text)
    print(f"ollama: Modelfile over {quant}; template checked on {checked} conversations")
    return {"name": settings["model_name"], "gguf": quant, "stops": wrappers.stops,
            "template_checked_on": checked, "template_from": "config" if settings["template"]
            else "measured"}


def read_probes(path: Path, count: int) -> list[list[dict]]:
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [row["messages"] for row in rows[:count]]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="scripts/deploy.json")
    sys.exit(main(parser.parse_args().config))
