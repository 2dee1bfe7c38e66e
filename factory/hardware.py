"""What this machine can train, and the settings that suit it.

`detect()` reads the machine without importing torch (nvidia-smi, /proc), so `factory check` and
`factory profile` answer at once. A profile maps the machine to a tier (CPU only, or the VRAM of its
GPU) with a recommended model size and the batch and LoRA settings that fit it. The settings are
advice written into training-config.json for the user to edit: model.name is never touched.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from factory import atomic
from factory.config import HardwareNote, ProjectConfig, load_config
from factory.errors import FactoryError
from factory.project import CONFIG_FILE, Project

SMI_QUERY = ["--query-gpu=name,memory.total", "--format=csv,noheader,nounits"]
SMI_TIMEOUT_S = 5
# CPU flags for native bf16 arithmetic (x86 AVX-512/AMX, ARM); without them bf16 is emulated and
# slower than float32, so the CPU profile keeps float32.
BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


# --- detection --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hardware:
    cpu_count: int
    ram_gib: float | None
    gpus: list[tuple[str, float]] = field(default_factory=list)  # (name, VRAM in GiB)
    cuda: bool = False
    cpu_bf16: bool = False

    def describe(self) -> str:
        """One line for people, e.g. "1 x NVIDIA H100 80GB HBM3 (80 GiB), 16 CPUs, 126 GiB RAM"."""
        counts: dict[tuple[str, float], int] = {}
        for gpu in self.gpus:
            counts[gpu] = counts.get(gpu, 0) + 1
        parts = [f"{n} x {name} ({vram:.0f} GiB)" for (name, vram), n in counts.items()]
        cpus = f"{self.cpu_count} CPUs" + (" with bf16" if self.cpu_bf16 else "")
        ram = f"{self.ram_gib:.0f} GiB RAM" if self.ram_gib else "RAM unknown"
        return ", ".join([*(parts or ["no CUDA GPU"]), cpus, ram])

    def to_dict(self) -> dict:
        return {"cpu_count": self.cpu_count,
                "ram_gib": None if self.ram_gib is None else round(self.ram_gib, 1),
                "gpus": [{"name": name, "vram_gib": round(vram, 1)} for name, vram in self.gpus],
                "cuda": self.cuda, "cpu_bf16": self.cpu_bf16, "summary": self.describe()}


def detect() -> Hardware:
    gpus = _gpus()
    return Hardware(cpu_count=os.cpu_count() or 1, ram_gib=_ram_gib(), gpus=gpus,
                    cuda=bool(gpus), cpu_bf16=_cpu_bf16())


def _gpus() -> list[tuple[str, float]]:
    # No binary, a driver that hangs or errors: the machine is treated as having no GPU.
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, *SMI_QUERY], capture_output=True, text=True,
                             timeout=SMI_TIMEOUT_S, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mib = line.rpartition(",")
        try:
            gpus.append((name.strip(), float(mib) / 1024))
        except ValueError:
            continue  # "[N/A]" and the like
    return gpus


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 ** 2
    except (OSError, ValueError, IndexError):
        pass
    try:  # not Linux
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    except (AttributeError, OSError, ValueError):
        return None


def _cpu_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):  # every core lists the same flags
                    return bool(BF16_FLAGS & set(value.split()))
    except OSError:
        pass
    return False


# --- profiles ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Profile:
    name: str
    min_vram_gib: float | None   # nominal VRAM where the tier starts; None: the CPU profile
    model_size: str
    example_models: tuple[str, ...]
    settings: dict[str, Any]     # dotted config path -> recommended value

    @property
    def recommended_model(self) -> str:
        return f"{self.model_size} (e.g. {', '.join(self.example_models)})"


def _settings(batch: int, accumulation: int, checkpointing: bool, r: int, load_in_4bit: bool,
              dtype: str, max_length: int | None = None) -> dict[str, Any]:
    settings = {"training.batch_size": batch,
                "training.gradient_accumulation_steps": accumulation,
                "training.gradient_checkpointing": checkpointing,
                "lora.r": r, "lora.alpha": 2 * r, "lora.load_in_4bit": load_in_4bit,
                "model.dtype": dtype}
    if max_length is not None:
        settings["model.max_length"] = max_length
    return settings


# Every tier keeps an effective batch of 8 (batch x accumulation), so a run planned on one machine
# learns at the same pace on another; smaller cards trade per-device batch for accumulation.
PROFILES: tuple[Profile, ...] = (
    Profile("cpu", None, "0.5B-1.5B class, full precision",
            ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct"),
            _settings(2, 4, False, 16, False, "float32", max_length=2048)),
    Profile("gpu-8gb", 0, "4B class in 4-bit",
            ("unsloth/gemma-3-4b-it", "Qwen/Qwen3-4B"),
            _settings(1, 8, True, 16, True, "auto", max_length=2048)),
    Profile("gpu-12gb", 10, "4B class (up to 8B in 4-bit)",
            ("unsloth/gemma-3-4b-it", "Qwen/Qwen3-8B"),
            _settings(2, 4, True, 16, True, "auto")),
    Profile("gpu-16gb", 16, "12B-14B class in 4-bit",
            ("unsloth/gemma-3-12b-it", "Qwen/Qwen3-14B"),
            _settings(2, 4, True, 16, True, "auto")),
    Profile("gpu-24gb", 24, "24B-27B class in 4-bit",
            ("unsloth/gemma-3-27b-it", "mistralai/Mistral-Small-24B-Instruct-2501"),
            _settings(1, 8, True, 32, True, "auto")),
    Profile("gpu-48gb", 48, "27B-32B class in 4-bit",
            ("unsloth/gemma-3-27b-it", "Qwen/Qwen2.5-32B-Instruct"),
            _settings(4, 2, True, 32, True, "auto")),
    Profile("gpu-80gb", 80, "27B-32B class in bf16",
            ("unsloth/gemma-3-27b-it", "Qwen/Qwen2.5-32B-Instruct"),
            _settings(2, 4, True, 32, False, "auto")),
)
# Drivers report a little less than the card's nominal size (a 24 GB card shows 23.99 GiB, a
# 16 GB T4 15 GiB, an 80 GB H100 79.6 GiB), so a tier counts from 90% of its nominal VRAM.
VRAM_SLACK = 0.9
# Settings that only ever lower the current value: a longer max_length is the data's need, and
# cutting it below the records would fail the format gate.
CEILINGS = {"model.max_length"}


def names() -> list[str]:
    return [p.name for p in PROFILES]


def named(name: str) -> Profile:
    for profile in PROFILES:
        if profile.name == name:
            return profile
    raise FactoryError("E_USAGE", f"no hardware profile named {name!r}",
                       hint=f"Profiles: {', '.join(names())}.", details={"profiles": names()})


def choose(machine: Hardware) -> Profile:
    """The CPU profile without a CUDA GPU, else the tier of the smallest GPU (every device a run
    may spread over must hold the per-device batch)."""
    if not (machine.cuda and machine.gpus):
        return PROFILES[0]
    vram = min(v for _, v in machine.gpus)
    tiers = [p for p in PROFILES if p.min_vram_gib is not None
             and vram >= p.min_vram_gib * VRAM_SLACK]
    return tiers[-1]


def tier(profile: Profile) -> str:
    """The profile's VRAM range in words, from the table."""
    if profile.min_vram_gib is None:
        return "no CUDA GPU"
    gpu = [p for p in PROFILES if p.min_vram_gib is not None]
    upper = {a.name: b.min_vram_gib for a, b in zip(gpu, gpu[1:])}.get(profile.name)
    if upper is None:
        return f"{profile.min_vram_gib:g}+ GiB VRAM"
    if not profile.min_vram_gib:
        return f"under {upper:g} GiB VRAM"
    return f"{profile.min_vram_gib:g}-{upper:g} GiB VRAM"


# --- recommendation ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    field: str
    current: Any
    recommended: Any

    @property
    def changes(self) -> bool:
        return self.current != self.recommended

    def to_dict(self) -> dict:
        return {"field": self.field, "current": self.current, "recommended": self.recommended,
                "changes": self.changes}


def recommend(profile: Profile, machine: Hardware, config: ProjectConfig) -> list[Setting]:
    """The profile's settings against the config's current values, adjusted to this project."""
    wanted = dict(profile.settings)
    if profile.min_vram_gib is None and machine.cpu_bf16:
        wanted["model.dtype"] = "bfloat16"
    for path in CEILINGS & wanted.keys():
        wanted[path] = min(wanted[path], current_value(config, path))
    if "grpo" in config.training.methods:
        batch = wanted["training.batch_size"] * wanted["training.gradient_accumulation_steps"]
        wanted["training.grpo.num_generations"] = group_size(
            batch, config.training.grpo.num_generations)
    return [Setting(path, current_value(config, path), value) for path, value in wanted.items()]


def group_size(batch: int, current: int) -> int:
    """GRPO's num_generations for a generation batch of `batch` completions: the current value
    when whole groups fit, else the divisor of the batch nearest to it (the smaller on a tie, as
    groups cost memory). The config validator refuses a group that does not divide the batch."""
    divisors = [n for n in range(2, batch + 1) if batch % n == 0]
    if not divisors:
        raise FactoryError("E_CONFIG", f"a generation batch of {batch} cannot hold a GRPO group "
                                       "of 2 or more completions",
                           hint="Raise training.batch_size or gradient_accumulation_steps.")
    return min(divisors, key=lambda n: (abs(n - current), n))


def current_value(config: ProjectConfig, path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


# --- writing the recommendation -------------------------------------------------------------

def apply(project: Project, profile: Profile, machine: Hardware,
          settings: list[Setting]) -> HardwareNote:
    """Write the settings and a hardware note into training-config.json, keeping every other key
    and the key order. The result is validated first: an invalid one is refused unwritten."""
    path = project.config_file
    if path.name != CONFIG_FILE:
        # Rewriting YAML would drop its comments: the settings are shown to copy in instead.
        shown = "; ".join(f"{s.field}: {json.dumps(s.recommended)}" for s in settings)
        raise FactoryError("E_CONFIG_EDIT", f"--apply writes {CONFIG_FILE} only, and this "
                                            f"project's config is {path.name}",
                           hint=f"Set these in {path.name} by hand: {shown or 'nothing to change'}",
                           details={"file": str(path),
                                    "settings": {s.field: s.recommended for s in settings}})
    raw = _read_raw(path)
    note = HardwareNote(profile=profile.name, detected=machine.describe(),
                        recommended_model=profile.recommended_model,
                        applied=[s.field for s in settings],
                        at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    for setting in settings:
        _set(raw, setting.field, setting.recommended)
    raw["hardware"] = note.model_dump()  # replaced in place when present, else appended last
    _validate(raw, path.name)
    atomic.write_json(path, raw)
    return note


def plan(project: Project, profile: Profile,
         machine: Hardware) -> tuple[ProjectConfig, list[Setting]]:
    """The project's config (it must validate) and the profile's settings against it."""
    config = load_config(project.config_file)
    return config, recommend(profile, machine, config)


def _read_raw(path) -> dict:
    # load_config has already accepted this file; read it again as plain JSON to keep its keys.
    return json.loads(path.read_text(encoding="utf-8"))


def _set(raw: dict, path: str, value: Any) -> None:
    *sections, key = path.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})  # an absent section was all defaults
    node[key] = value


def _validate(raw: dict, filename: str) -> None:
    try:
        ProjectConfig.model_validate({k: v for k, v in raw.items() if k != "$schema"})
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "(root)", "expected": e["msg"]}
                  for e in exc.errors(include_input=False, include_url=False)]
        lines = "; ".join(f"{e['field']}: {e['expected']}" for e in errors)
        raise FactoryError("E_CONFIG", f"the recommended settings would make {filename} invalid "
                                       f"({lines}); nothing was written",
                           hint=f"Edit {filename} by hand, or pick another profile with "
                                "`factory profile --profile NAME`.",
                           details={"file": filename, "errors": errors}) from None
