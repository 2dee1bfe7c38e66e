"""Distributed finetune runs under accelerate launch, and the SLURM job that runs the same line."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from conftest import factory
from factory import distributed
from factory.config import ProjectConfig
from factory.errors import CATALOGUE, FactoryError

BASE = {"name": "p", "model": {"name": "models/base"}}


def config(**distributed_section) -> ProjectConfig:
    return ProjectConfig.model_validate({**BASE, "distributed": distributed_section})


def set_config(project: Path, **changes) -> None:
    path = project / "training-config.json"
    cfg = json.loads(path.read_text())
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        cfg.setdefault(section, {})[key] = value
    path.write_text(json.dumps(cfg, indent=2))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("section,message", [
    ({"strategy": "ddp", "num_processes": 1}, "at least 2 processes"),
    ({"strategy": "deepspeed", "deepspeed": {"zero_stage": 2, "offload_params": "cpu"}},
     "offload_params needs zero_stage 3"),
    ({"strategy": "fsdp", "fsdp": {"sharding": "HYBRID_SHARD"}}, "distributed.fsdp.sharding"),
    ({"strategy": "ddp", "slurm": {"partition": "gpu; rm -rf ~"}}, "distributed.slurm.partition"),
    ({"strategy": "ddp", "slurm": {"time": "soon"}}, "distributed.slurm.time"),
    ({"strategy": "mpi"}, "distributed.strategy"),
])
def test_bad_distributed_settings_name_the_field(tmp_path, section, message):
    from factory.config import load_config

    path = tmp_path / "training-config.json"
    path.write_text(json.dumps({**BASE, "distributed": section}))
    with pytest.raises(FactoryError) as caught:
        load_config(path)
    assert caught.value.code == "E_CONFIG" and message in caught.value.message
    assert str(path) in caught.value.message


def test_unsloth_and_qlora_sharding_are_refused_with_a_way_out(tmp_path):
    with pytest.raises(ValueError, match="backend unsloth runs one process"):
        ProjectConfig.model_validate({**BASE, "training": {"backend": "unsloth"},
                                      "distributed": {"strategy": "ddp"}})
    with pytest.raises(ValueError, match="load_in_4bit .* fsdp"):
        ProjectConfig.model_validate({**BASE, "lora": {"load_in_4bit": True},
                                      "distributed": {"strategy": "fsdp"}})


def test_only_what_changes_training_is_a_finetune_input():
    plain = config(strategy="ddp").distributed.training_view()
    elsewhere = config(strategy="ddp", main_process_port=1234,
                       slurm={"partition": "a100", "time": "1-00:00:00"}).distributed
    assert elsewhere.training_view() == plain
    assert config(strategy="ddp", num_processes=4).distributed.training_view() != plain
    assert config().distributed.training_view() == {"strategy": "none"}


# --- the accelerate config ---------------------------------------------------------------------

@pytest.mark.parametrize("section,kind", [
    ({"strategy": "ddp", "num_processes": 4}, "MULTI_GPU"),
    ({"strategy": "deepspeed", "num_processes": 8, "deepspeed": {"zero_stage": 3,
      "offload_params": "cpu", "offload_optimizer": "cpu"}}, "DEEPSPEED"),
    ({"strategy": "fsdp", "num_processes": 2, "num_machines": 2,
      "fsdp": {"sharding": "SHARD_GRAD_OP"}}, "FSDP"),
])
def test_accelerate_reads_the_generated_config(tmp_path, section, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = config(**section)
    path = tmp_path / "accelerate.json"
    path.write_text(json.dumps(distributed.accelerate_config(cfg)))
    loaded = load_config_from_file(str(path))
    assert loaded.distributed_type.value == kind
    assert loaded.num_processes == cfg.distributed.world_size
    assert loaded.num_machines == cfg.distributed.num_machines
    if kind == "DEEPSPEED":
        assert loaded.deepspeed_config["zero_stage"] == 3
        assert loaded.deepspeed_config["offload_param_device"] == "cpu"
        assert loaded.deepspeed_config["gradient_accumulation_steps"] == 1
    if kind == "FSDP":
        assert loaded.fsdp_config["fsdp_version"] == 2
        assert loaded.fsdp_config["fsdp_reshard_after_forward"] is False


# --- the SLURM job -----------------------------------------------------------------------------

def srun_words(script: str) -> list[str]:
    """The command each srun task runs: the words inside its `bash -c '...'`."""
    (line,) = [ln for ln in script.splitlines() if ln.startswith("srun ")]
    words = shlex.split(line)
    inner = words[words.index("-c") + 1]
    return shlex.split(inner)


def test_the_sbatch_script_is_well_formed_and_runs_the_local_line(tmp_path):
    cfg = config(strategy="deepspeed", num_processes=4, num_machines=2,
                 slurm={"partition": "gpu", "account": "ml-team", "time": "2-00:00:00",
                        "mem": "200G"})
    script = distributed.sbatch(cfg)
    path = tmp_path / "finetune.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0

    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    directives = [i for i, ln in enumerate(lines) if ln.startswith("#SBATCH ")]
    first_command = next(i for i, ln in enumerate(lines) if ln and not ln.startswith("#"))
    assert directives and max(directives) < first_command  # sbatch stops reading at a command
    found = dict(ln[len("#SBATCH --"):].split("=", 1) for ln in lines if ln.startswith("#SBATCH"))
    assert found == {"job-name": "p-finetune", "nodes": "2", "ntasks-per-node": "1",
                     "gpus-per-node": "4", "cpus-per-task": "8", "time": "2-00:00:00",
                     "output": ".factory/logs/slurm-%j.log", "partition": "gpu",
                     "account": "ml-team", "mem": "200G"}

    words = srun_words(script)
    assert words[:2] == ["exec", "${PYTHON:-python}"]
    flags = distributed.cluster_flags(cfg.distributed)
    launched = words[2:]
    at = launched.index("--num_machines")
    assert launched[at:at + len(flags)] == flags
    # Without the flags that say which node is which, it is the finetune gate's own line.
    assert launched[:at] + launched[at + len(flags):] == distributed.launch_args(cfg.distributed)


def test_without_a_strategy_the_job_runs_the_plain_script():
    cfg = config()
    assert srun_words(distributed.sbatch(cfg))[2:] == list(distributed.SCRIPT_ARGS)
    assert "#SBATCH --gpus-per-node=1" in distributed.sbatch(cfg)


def test_cluster_needs_format_first(demo_project):
    rc, out = factory("-C", str(demo_project), "cluster")
    assert rc == CATALOGUE["E_GATE_ORDER"].exit_code and out["error"]["code"] == "E_GATE_ORDER"
    assert not (demo_project / "scripts" / "finetune.sbatch").exists()


# --- end to end on the tiny model ---------------------------------------------------------------

def quick_training(project: Path) -> None:
    set_config(project, **{"training.max_steps": 4, "training.save_steps": 2,
                           "training.logging_steps": 1, "training.batch_size": 8})


def adapter_tensors(project: Path) -> dict[str, tuple]:
    adapter = project / "models" / "checkpoints" / "lora" / "adapter_model.safetensors"
    with safe_open(str(adapter), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def test_two_gloo_processes_make_the_same_artefacts_as_one(demo_project, tmp_path):
    quick_training(demo_project)
    for gate in ("baseline", "format"):
        assert factory("-C", str(demo_project), "run", gate)[0] == 0
    ddp = tmp_path / "ddp"
    shutil.copytree(demo_project, ddp)
    set_config(ddp, **{"distributed.strategy": "ddp", "distributed.num_processes": 2})

    for project in (demo_project, ddp):
        rc, out = factory("-C", str(project), "run", "finetune")
        assert rc == 0, out
    one = json.loads((demo_project / "metrics" / "training-stats.json").read_text())
    two = json.loads((ddp / "metrics" / "training-stats.json").read_text())

    # Same artefacts: the adapter's files and tensors, the stats' fields, the gate's outputs.
    files = {p.name for p in (demo_project / "models" / "checkpoints" / "lora").iterdir()}
    assert files == {p.name for p in (ddp / "models" / "checkpoints" / "lora").iterdir()}
    assert adapter_tensors(demo_project) == adapter_tensors(ddp)
    assert set(one) == set(two) and one["total_steps"] == two["total_steps"] == 4
    assert (ddp / "reports" / "training.png").exists()
    # ... from two processes: each step saw twice the rows, and one process wrote each file.
    assert one["distributed"] == {"strategy": "none", "world_size": 1}
    assert two["distributed"] == {"strategy": "ddp", "world_size": 2}
    assert two["epochs"] == pytest.approx(2 * one["epochs"], rel=0.01)
    log = (ddp / ".factory" / "logs" / "finetune.log").read_text()
    assert log.startswith("$ python -m accelerate.commands.launch --config_file "
                          "scripts/accelerate.json scripts/finetune.py")
    assert log.count("stage 1 done") == 1
    history = [json.loads(line) for line in
               (ddp / ".factory" / "training-log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history] == [1, 2, 3, 4]

    rc, out = factory("-C", str(ddp), "status")
    finetune = next(g for g in out["result"]["gates"] if g["name"] == "finetune")
    assert finetune["status"] == "passed" and finetune["summary"]["processes"] == 2


def test_the_slurm_job_trains_and_factory_records_it(demo_project, tmp_path):
    """The sbatch script run as SLURM would run it on one node (srun and scontrol stand-ins),
    then `factory run finetune` records the job's run without training again."""
    quick_training(demo_project)
    set_config(demo_project, **{"distributed.strategy": "ddp", "distributed.num_processes": 2,
                                "distributed.main_process_port": free_port()})
    for gate in ("baseline", "format"):
        assert factory("-C", str(demo_project), "run", gate)[0] == 0
    rc, out = factory("-C", str(demo_project), "cluster")
    assert rc == 0, out
    assert out["next"]["command"] == "sbatch scripts/finetune.sbatch"

    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    stand_ins = {"srun": '#!/bin/sh\nwhile [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"\n',
                 "scontrol": "#!/bin/sh\necho 127.0.0.1\n"}
    for name, text in stand_ins.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": sys.executable,
           "SLURM_SUBMIT_DIR": str(demo_project), "SLURM_NNODES": "1", "SLURM_NODEID": "0",
           "SLURM_JOB_NODELIST": "node001"}
    job = subprocess.run(["bash", str(demo_project / "scripts" / "finetune.sbatch")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert job.returncode == 0, job.stderr[-3000:]
    assert "stage 1 done: 4 steps" in job.stdout

    rc, out = factory("-C", str(demo_project), "run", "finetune")
    assert rc == 0, out
    log = (demo_project / ".factory" / "logs" / "finetune.log").read_text()
    assert "finished by an earlier run" in log and "starting fresh" not in log
    stats = json.loads((demo_project / "metrics" / "training-stats.json").read_text())
    assert stats["total_steps"] == 4 and stats["distributed"]["world_size"] == 2
