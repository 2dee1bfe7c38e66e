"""The pre-training checklist: what must hold before a finetune is worth starting.

`factory check` prints it, and the finetune gate runs it first: a `fail` stops the gate before any
weights load, a `warn` is said and training goes on. Every item carries a hint for the next step.
Nothing here imports torch: hardware is read from nvidia-smi and /proc (factory.hardware), so the
check answers fast.
"""
from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import asdict, dataclass

from factory.config import ProjectConfig
from factory.hardware import Hardware
from factory.hardware import detect as detect_hardware
from factory.project import Project, local_model_dir
from factory.splits import split_names
from factory.state import ProjectState

RECOMMENDED_SAMPLES = 100
# The columns a split row must carry for each method (see factory/methods.py).
COLUMNS = {"sft": ("messages",), "dpo": ("prompt", "chosen", "rejected"),
           "kto": ("prompt", "completion", "label"), "grpo": ("prompt",)}
TRAINING_PACKAGES = ("torch", "transformers", "trl", "peft", "datasets")
GENERATION_MARKER = re.compile(r"{%-?\s*generation\s*-?%}")


@dataclass(frozen=True)
class Item:
    name: str
    status: str   # pass | warn | fail
    detail: str
    hint: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def run(project: Project, config: ProjectConfig) -> list[Item]:
    machine = detect_hardware()
    return [baseline(project), *stage_splits(project, config), *rewards(project, config),
            packages(), model(project, config), hardware(machine),
            *distributed(config, machine)]


def failed(items: list[Item]) -> list[Item]:
    return [i for i in items if i.status == "fail"]


def baseline(project: Project) -> Item:
    st = ProjectState.load(project)
    done = st.gate("baseline").get("status") == "passed"
    exists = (project.metrics_dir / "baseline.json").exists()
    if done and exists:
        return Item("baseline", "pass", "metrics/baseline.json holds the base model's scores")
    return Item("baseline", "fail", "the base model has not been scored",
                "Run `factory run baseline` first: it fixes what the candidate must beat.")


def stage_splits(project: Project, config: ProjectConfig) -> list[Item]:
    """The split checks for each method of the plan; a chain's later stages are named by method."""
    plan = split_names(config.training.methods)
    items = []
    for position, (method, names) in enumerate(plan.items()):
        label = "" if position == 0 else f"[{method}]"
        items += [Item(i.name + label, i.status, i.detail, i.hint)
                  for i in splits(project, config, method, names)]
    return items


def splits(project: Project, config: ProjectConfig, method: str,
           names: dict[str, str]) -> list[Item]:
    train = project.split_file(names["train"])
    shown = f"data/splits/{train.name}"
    if not train.exists():
        return [Item("train_split", "fail", f"{shown} does not exist",
                     "Run `factory run format`.")]
    count, bad = _count_rows(train, COLUMNS[method])
    items = []
    if bad:
        items.append(Item("train_split", "fail", f"line {bad[0]} of {shown} lacks the columns "
                                                 f"{method} reads ({', '.join(COLUMNS[method])})",
                          f"The split was written for another method; run `factory run format` "
                          f"again for {method}."))
    else:
        items.append(Item("train_split", "pass", f"{count} {method} rows"))
    if count < config.data.min_train_records:
        items.append(Item("samples", "fail", f"{count} {method} training rows, fewer than "
                                             f"data.min_train_records={config.data.min_train_records}",
                          "Add data to data/raw/."))
    elif count < RECOMMENDED_SAMPLES:
        items.append(Item("samples", "warn", f"only {count} {method} training rows; "
                                             f"{RECOMMENDED_SAMPLES}+ are recommended, "
                                             "1000+ better",
                          "Add data to data/raw/ for a model that generalises."))
    else:
        items.append(Item("samples", "pass", f"{count} {method} training rows"))
    val = project.split_file(names["val"])
    val_rows = _count_rows(val, ())[0] if val.exists() else 0
    items.append(Item("val_split", "pass", f"{val_rows} validation rows") if val_rows else
                 Item("val_split", "warn", "no validation rows: overfitting will go unseen",
                      "Raise data.split.val in training-config.json and run the format gate."))
    return items


def _count_rows(path, columns: tuple[str, ...]) -> tuple[int, list[int]]:
    count, bad = 0, []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            count += 1
            if columns:
                row = json.loads(line)
                if any(row.get(c) is None for c in columns):
                    bad.append(number)
    return count, bad


def rewards(project: Project, config: ProjectConfig) -> list[Item]:
    """Every reward builds: its user file imports, its labelled examples can be learned from."""
    if not config.rewards:
        return []
    from factory.rewards import RewardError, build

    try:
        build([r.model_dump() for r in config.rewards], root=project.root)
    except RewardError as exc:
        return [Item("rewards", "fail", str(exc),
                     "Fix that entry under `rewards` in training-config.json, or the file it "
                     "names.")]
    return [Item("rewards", "pass", f"{len(config.rewards)} reward(s) build: "
                                    f"{', '.join(r.name for r in config.rewards)}")]


def packages() -> Item:
    missing = [p for p in TRAINING_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        return Item("packages", "fail", f"not installed: {', '.join(missing)}",
                    "pip install 'model-factory[train]' (and torch for your hardware first).")
    return Item("packages", "pass", "torch, transformers, trl, peft and datasets are installed")


def model(project: Project, config: ProjectConfig) -> Item:
    local = local_model_dir(project, config.model.name)
    if local is None:
        return Item("model", "pass", f"hub model {config.model.name} (downloaded on first use)")
    if not (local / "config.json").exists():
        return Item("model", "fail", f"{project.rel(local)} has no config.json",
                    "Point model.name at a saved model folder or a hub id.")
    template = _chat_template(local)
    if template is None:
        return Item("model", "fail", f"{project.rel(local)} has no chat template",
                    "Use an instruct model, or add a chat_template to its tokenizer_config.json.")
    needs_markers = "sft" in config.training.methods and config.training.assistant_only_loss
    if needs_markers and not GENERATION_MARKER.search(template):
        return Item("model", "fail", "the chat template has no {% generation %} markers, which "
                                     "training.assistant_only_loss needs",
                    "Add the markers to the template, or set training.assistant_only_loss false.")
    return Item("model", "pass", f"{project.rel(local)} with a chat template")


def _chat_template(folder) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    try:
        settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    template = settings.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name", "template"}, ...]
        template = " ".join(t.get("template", "") for t in template)
    return template or None


def hardware(machine: Hardware | None = None) -> Item:
    machine = machine or detect_hardware()
    shown = (f"{machine.ram_gib:.0f} GiB RAM, {machine.cpu_count} CPU cores" if machine.ram_gib
             else "RAM unknown")
    if not machine.gpus:
        return Item("hardware", "warn", f"no CUDA GPU; {shown}",
                    "Fine for tiny models; a real model wants a CUDA GPU. `factory profile` "
                    "recommends settings for this machine.")
    listed = ", ".join(f"{name} ({vram:.0f} GiB)" for name, vram in machine.gpus)
    return Item("hardware", "pass", f"{listed}; {shown}")


def distributed(config: ProjectConfig, machine: Hardware) -> list[Item]:
    """Can this machine run the distributed launch the config asks for? (none: no item)"""
    d = config.distributed
    if not d.enabled:
        return []
    if d.num_machines > 1:
        return [Item("distributed", "fail", f"distributed.num_machines is {d.num_machines}: "
                     "one machine cannot start the others",
                     "Run `factory cluster` and submit scripts/finetune.sbatch to SLURM; "
                     "`factory run finetune` records the finished job.")]
    if importlib.util.find_spec("accelerate") is None:
        return [Item("distributed", "fail", "distributed runs start under `accelerate launch`, "
                     "and accelerate does not import", "pip install 'accelerate>=1.0'")]
    if d.strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        return [Item("distributed", "fail", "distributed.strategy is deepspeed, and deepspeed "
                     "does not import", "pip install deepspeed (on the CUDA machine), or use "
                     "strategy ddp or fsdp")]
    gpus = len(machine.gpus)
    if not gpus:
        if d.strategy != "ddp":
            return [Item("distributed", "fail", f"distributed.strategy {d.strategy} needs CUDA "
                         "GPUs and this machine has none",
                         "Use strategy ddp (CPU processes with gloo) here, or run on GPUs.")]
        return [Item("distributed", "pass", f"ddp on {d.num_processes} CPU processes (gloo)")]
    if d.num_processes > gpus:
        return [Item("distributed", "fail", f"distributed.num_processes is {d.num_processes} "
                     f"but this machine has {gpus} GPU(s)",
                     f"Set distributed.num_processes to at most {gpus}.")]
    return [Item("distributed", "pass", f"{d.strategy} on {d.num_processes} of {gpus} GPU(s)")]
