"""Hardware detection and profiles: the tier per machine, and `factory profile [--apply]`."""
import json
import subprocess
from pathlib import Path

import pytest

from conftest import factory
from factory import checklist, cli, hardware
from factory.config import ProjectConfig, load_config
from factory.hardware import Hardware

ROOT = Path(__file__).resolve().parent.parent


def machine(*vram: float, name: str = "GPU", cpu_bf16: bool = False) -> Hardware:
    return Hardware(cpu_count=16, ram_gib=64.0, gpus=[(name, v) for v in vram],
                    cuda=bool(vram), cpu_bf16=cpu_bf16)


@pytest.fixture
def project(tmp_path) -> Path:
    rc, out = factory("init", str(tmp_path / "p"))
    assert rc == 0, out
    return tmp_path / "p"


def edit_config(project: Path, change) -> None:
    path = project / "training-config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config, indent=2))


def make_grpo(config: dict, batch: int, accumulation: int, generations: int) -> None:
    config["training"].update({"method": "grpo", "batch_size": batch,
                               "gradient_accumulation_steps": accumulation,
                               "grpo": {"num_generations": generations}})
    config["rewards"] = [{"name": "answer", "type": "reference_match"}]


def run_in_process(capsys, *args: str) -> tuple[int, dict]:
    rc = cli.main([*args, "--json"])
    return rc, json.loads(capsys.readouterr().out)


# --- detection --------------------------------------------------------------------------------

def test_nvidia_smi_output_is_parsed(monkeypatch):
    out = "NVIDIA H100 80GB HBM3, 81559\nNVIDIA GeForce RTX 3070, 8192\nBroken, [N/A]\n"
    monkeypatch.setattr(hardware.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(hardware.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=out))
    found = hardware.detect()
    assert found.cuda and [name for name, _ in found.gpus] == ["NVIDIA H100 80GB HBM3",
                                                               "NVIDIA GeForce RTX 3070"]
    assert found.gpus[1][1] == 8.0 and found.cpu_count >= 1
    assert found.describe().startswith("1 x NVIDIA H100 80GB HBM3 (80 GiB), 1 x NVIDIA GeForce")


@pytest.mark.parametrize("failure", [FileNotFoundError("gone"),
                                     subprocess.TimeoutExpired("nvidia-smi", 5),
                                     subprocess.CalledProcessError(9, "nvidia-smi")])
def test_a_failing_nvidia_smi_means_no_gpu(monkeypatch, failure):
    def fail(*args, **kwargs):
        raise failure
    monkeypatch.setattr(hardware.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(hardware.subprocess, "run", fail)
    found = hardware.detect()
    assert found.gpus == [] and not found.cuda
    assert found.describe().startswith("no CUDA GPU, ")


def test_no_nvidia_smi_means_no_gpu(monkeypatch):
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)
    assert hardware.detect().gpus == []


def test_checklist_hardware_item_uses_the_detection(monkeypatch):
    monkeypatch.setattr(checklist, "detect_hardware", lambda: machine())
    item = checklist.hardware()
    assert item.status == "warn" and item.detail == "no CUDA GPU; 64 GiB RAM, 16 CPU cores"
    monkeypatch.setattr(checklist, "detect_hardware", lambda: machine(23.99, name="RTX 4090"))
    item = checklist.hardware()
    assert item.status == "pass" and item.detail.startswith("RTX 4090 (24 GiB); 64 GiB RAM")


# --- profiles ---------------------------------------------------------------------------------

@pytest.mark.parametrize("vram,expected", [
    ((), "cpu"), ((6.0,), "gpu-8gb"), ((8.0,), "gpu-8gb"), ((10.0,), "gpu-12gb"),
    ((11.99,), "gpu-12gb"), ((15.0,), "gpu-16gb"),   # a 16 GB T4 reports 15 GiB
    ((23.99,), "gpu-24gb"), ((39.4,), "gpu-24gb"), ((44.99,), "gpu-48gb"),
    ((79.6,), "gpu-80gb"), ((139.8,), "gpu-80gb"),
    ((79.6, 8.0), "gpu-8gb"),                         # the smallest device decides
])
def test_profile_per_vram_tier(vram, expected):
    assert hardware.choose(machine(*vram)).name == expected


def test_every_profile_is_a_valid_config_with_an_effective_batch_of_8():
    base = ProjectConfig.model_validate({"name": "p", "model": {"name": "m"}})
    for profile in hardware.PROFILES:
        settings = hardware.recommend(profile, machine(), base)
        config = base.model_dump()
        for s in settings:
            section, *rest = s.field.split(".")
            node = config[section]
            for part in rest[:-1]:
                node = node[part]
            node[rest[-1]] = s.recommended
        valid = ProjectConfig.model_validate(config)
        assert valid.training.batch_size * valid.training.gradient_accumulation_steps == 8
        assert (profile.min_vram_gib is None) is (profile.name == "cpu")


def test_cpu_profile_uses_bf16_only_where_the_cpu_has_it():
    config = ProjectConfig.model_validate({"name": "p", "model": {"name": "m"}})
    cpu = hardware.named("cpu")
    dtype = {s.field: s.recommended for s in hardware.recommend(cpu, machine(), config)}
    assert dtype["model.dtype"] == "float32"
    dtype = {s.field: s.recommended
             for s in hardware.recommend(cpu, machine(cpu_bf16=True), config)}
    assert dtype["model.dtype"] == "bfloat16"


def test_max_length_is_only_ever_lowered():
    cpu = hardware.named("cpu")
    for current, expected in ((4096, 2048), (512, 512)):
        config = ProjectConfig.model_validate({"name": "p",
                                               "model": {"name": "m", "max_length": current}})
        settings = {s.field: s for s in hardware.recommend(cpu, machine(), config)}
        assert settings["model.max_length"].recommended == expected


@pytest.mark.parametrize("batch,current,expected", [(8, 4, 4), (8, 6, 4), (8, 16, 8),
                                                    (16, 3, 2), (8, 8, 8)])
def test_grpo_group_size_divides_the_generation_batch(batch, current, expected):
    assert hardware.group_size(batch, current) == expected


def test_grpo_projects_get_a_fitting_num_generations():
    raw = {"name": "p", "model": {"name": "m"}, "training": {}}
    make_grpo(raw, batch=2, accumulation=3, generations=6)
    config = ProjectConfig.model_validate(raw)
    settings = {s.field: s for s in hardware.recommend(hardware.named("gpu-8gb"), machine(),
                                                       config)}
    assert settings["training.grpo.num_generations"].current == 6
    assert settings["training.grpo.num_generations"].recommended == 4  # 1 x 8 holds groups of 4
    sft = ProjectConfig.model_validate({"name": "p", "model": {"name": "m"}})
    fields = [s.field for s in hardware.recommend(hardware.named("gpu-8gb"), machine(), sft)]
    assert "training.grpo.num_generations" not in fields


def test_docs_list_every_profile():
    training = (ROOT / "docs" / "training.md").read_text()
    assert all(f"`{p.name}`" in training for p in hardware.PROFILES)


# --- the command ------------------------------------------------------------------------------

def test_profile_shows_settings_without_writing(project):
    before = (project / "training-config.json").read_bytes()
    rc, out = factory("-C", str(project), "profile", "--profile", "gpu-8gb")
    assert rc == 0 and out["ok"] and out["command"] == "profile" and out["version"] == 1
    result = out["result"]
    assert result["profile"] == {"name": "gpu-8gb", "source": "option",
                                 "tier": "under 10 GiB VRAM", "model_size": "4B class in 4-bit",
                                 "example_models": list(hardware.named("gpu-8gb")
                                                        .example_models)}
    assert set(result["hardware"]) == {"cpu_count", "ram_gib", "gpus", "cuda", "cpu_bf16",
                                       "summary"}
    settings = {s["field"]: s for s in result["settings"]}
    assert settings["training.batch_size"] == {"field": "training.batch_size", "current": 4,
                                               "recommended": 1, "changes": True}
    assert "training.batch_size" in result["changed"] and not result["applied"]
    assert result["note"] is None
    assert out["next"]["command"] == "factory profile --apply --profile gpu-8gb"
    assert (project / "training-config.json").read_bytes() == before


def test_apply_writes_a_valid_config_and_keeps_every_other_key(project):
    path = project / "training-config.json"
    before = json.loads(path.read_text())
    rc, out = factory("-C", str(project), "profile", "--apply", "--profile", "gpu-24gb")
    assert rc == 0 and out["result"]["applied"]
    after = json.loads(path.read_text())
    assert list(after) == [*before, "hardware"]
    for section, values in before.items():
        if isinstance(values, dict):  # old keys first, in their order; new ones appended
            assert list(after[section])[:len(values)] == list(values)
    written = set(out["result"]["note"]["applied"])
    assert written == {s["field"] for s in out["result"]["settings"]}
    for section, values in before.items():
        for key, value in (values.items() if isinstance(values, dict) else [(None, values)]):
            if f"{section}.{key}" not in written:
                assert (after[section][key] if key else after[section]) == value
    config = load_config(path)
    assert config.model.name == before["model"]["name"]
    assert (config.lora.r, config.lora.alpha, config.training.batch_size) == (32, 64, 1)
    assert config.hardware.profile == "gpu-24gb" and config.hardware.at.endswith("+00:00")
    assert config.hardware.recommended_model.startswith("24B-27B class")
    # a second run finds nothing to change and replaces the note in place
    rc, out = factory("-C", str(project), "profile", "--apply", "--profile", "gpu-24gb")
    assert rc == 0 and out["result"]["changed"] == []
    assert list(json.loads(path.read_text())) == [*before, "hardware"]


def test_apply_keeps_grpo_groups_whole(project):
    edit_config(project, lambda c: make_grpo(c, batch=2, accumulation=3, generations=6))
    rc, out = factory("-C", str(project), "profile", "--apply", "--profile", "gpu-48gb")
    assert rc == 0, out
    training = load_config(project / "training-config.json").training
    assert (training.batch_size, training.gradient_accumulation_steps) == (4, 2)
    assert training.grpo.num_generations == 4


def test_an_invalid_result_is_refused_and_nothing_changes(project, monkeypatch, capsys):
    path = project / "training-config.json"
    before = path.read_bytes()
    broken = hardware.Profile("cpu", None, "any", ("m",),
                              {**hardware.named("cpu").settings, "lora.r": 0})
    monkeypatch.setattr(hardware, "PROFILES", (broken, *hardware.PROFILES[1:]))
    rc, out = run_in_process(capsys, "-C", str(project), "profile", "--apply",
                             "--profile", "cpu")
    assert rc == 2 and not out["ok"] and out["error"]["code"] == "E_CONFIG"
    assert out["error"]["details"]["errors"][0]["field"] == "lora.r"
    assert "nothing was written" in out["error"]["message"] and out["next"]["reason"]
    assert path.read_bytes() == before
    assert not list(project.glob(".training-config.json.*"))  # no temp file left behind


def test_an_invalid_config_is_refused_unchanged(project):
    edit_config(project, lambda c: c["training"].update({"batch_sise": 2}))
    before = (project / "training-config.json").read_bytes()
    rc, out = factory("-C", str(project), "profile", "--apply")
    assert rc == 2 and out["error"]["code"] == "E_CONFIG"
    assert (project / "training-config.json").read_bytes() == before


def test_unknown_profile_is_a_usage_error(project):
    rc, out = factory("-C", str(project), "profile", "--profile", "gpu-1tb")
    assert rc == 2 and out["error"]["code"] == "E_USAGE"
    assert "gpu-80gb" in out["error"]["hint"] and out["next"]["command"] is None


def test_without_profile_option_the_detected_tier_is_used(project, monkeypatch, capsys):
    monkeypatch.setattr(hardware, "detect", lambda: machine(79.6, name="NVIDIA H100 80GB HBM3"))
    rc, out = run_in_process(capsys, "-C", str(project), "profile", "--apply")
    assert rc == 0
    assert out["result"]["profile"]["name"] == "gpu-80gb"
    assert out["result"]["profile"]["source"] == "detected"
    note = load_config(project / "training-config.json").hardware
    assert note.detected == "1 x NVIDIA H100 80GB HBM3 (80 GiB), 16 CPUs, 64 GiB RAM"
    assert out["next"]["command"] == "factory next"


def test_human_output_marks_what_changes(project, capsys):
    assert cli.main(["-C", str(project), "profile", "--profile", "gpu-8gb"]) == 0
    out = capsys.readouterr().out
    assert "profile  gpu-8gb (under 10 GiB VRAM; --profile)" in out
    assert "training.gradient_checkpointing" in out and "false      true  *" in out


def test_apply_waits_for_no_running_gate(project):
    from factory.lock import ProjectLock
    from factory.project import Project

    before = (project / "training-config.json").read_bytes()
    with ProjectLock(Project.open(project)):
        rc, out = factory("-C", str(project), "profile", "--apply", "--profile", "cpu")
    assert rc == 4 and out["error"]["code"] == "E_LOCKED"
    assert (project / "training-config.json").read_bytes() == before
