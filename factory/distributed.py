"""The finetune script on several processes, GPUs or machines, under engines that already exist.

model-factory launches nothing of its own. For `distributed.strategy` ddp, deepspeed or fsdp it
writes the accelerate config a person would otherwise write with `accelerate config`
(scripts/accelerate.json; accelerate reads JSON as well as YAML) and runs the gate's script under
`accelerate launch` with it. For a cluster it writes a SLURM job script whose `srun` line is that
same launch line plus the flags that say which node is which. Nothing here imports torch or
accelerate: these are plain data and command lines.
"""
from __future__ import annotations

import shlex

from factory.config import DistributedConfig, ProjectConfig

ACCELERATE_CONFIG = "scripts/accelerate.json"
SBATCH_FILE = "scripts/finetune.sbatch"
LAUNCH_MODULE = "accelerate.commands.launch"  # `accelerate launch`, from this interpreter
CLUSTER_PORT = 29500  # several machines cannot agree on a port picked at random
SCRIPT_ARGS = ("scripts/finetune.py", "--config", "scripts/finetune.json")
# accelerate's distributed_type per strategy. On a machine without CUDA, MULTI_GPU still starts
# num_processes workers (torch.distributed.run); the script trains them on CPU with gloo.
DISTRIBUTED_TYPE = {"ddp": "MULTI_GPU", "deepspeed": "DEEPSPEED", "fsdp": "FSDP"}


def accelerate_config(config: ProjectConfig) -> dict:
    """scripts/accelerate.json: `accelerate config`'s format for this project's strategy."""
    d = config.distributed
    cfg = {"compute_environment": "LOCAL_MACHINE", "debug": False,
           "distributed_type": DISTRIBUTED_TYPE[d.strategy],
           # accelerate counts processes over all machines and divides by num_machines.
           "num_processes": d.world_size, "num_machines": d.num_machines, "machine_rank": 0,
           "main_process_port": d.main_process_port, "rdzv_backend": "static",
           "same_network": True, "gpu_ids": "all", "use_cpu": False,
           "mixed_precision": d.mixed_precision, "main_training_function": "main"}
    if d.strategy == "deepspeed":
        cfg["deepspeed_config"] = _deepspeed(d, config.training.gradient_accumulation_steps)
    if d.strategy == "fsdp":
        cfg["fsdp_config"] = _fsdp(d)
    return cfg


def _deepspeed(d: DistributedConfig, accumulation: int) -> dict:
    z = d.deepspeed
    return {"zero_stage": z.zero_stage, "offload_optimizer_device": z.offload_optimizer,
            "offload_param_device": z.offload_params, "gradient_clipping": z.gradient_clipping,
            # must equal the trainer's, or DeepSpeed refuses the batch arithmetic
            "gradient_accumulation_steps": accumulation,
            "zero3_init_flag": z.zero_stage == 3, "zero3_save_16bit_model": z.zero_stage == 3,
            "deepspeed_multinode_launcher": "standard"}


def _fsdp(d: DistributedConfig) -> dict:
    f = d.fsdp
    return {"fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_reshard_after_forward": f.sharding == "FULL_SHARD",
            "fsdp_offload_params": f.cpu_offload,
            "fsdp_activation_checkpointing": f.activation_checkpointing,
            "fsdp_cpu_ram_efficient_loading": True,
            # the adapter is small: save it whole, as a plain PEFT folder
            "fsdp_state_dict_type": "FULL_STATE_DICT"}


def launch_args(d: DistributedConfig) -> list[str]:
    """What follows the Python interpreter on the finetune gate's command line."""
    if not d.enabled:
        return list(SCRIPT_ARGS)
    return ["-m", LAUNCH_MODULE, "--config_file", ACCELERATE_CONFIG, *SCRIPT_ARGS]


def cluster_flags(d: DistributedConfig) -> list[str]:
    """The flags a cluster job adds to the launch line: which machine each launcher is, and
    where the first one listens. Values are shell variables, expanded on each node."""
    return ["--num_machines", "$SLURM_NNODES", "--machine_rank", "$SLURM_NODEID",
            "--main_process_ip", "$MAIN_PROCESS_IP",
            "--main_process_port", str(d.main_process_port or CLUSTER_PORT)]


def cluster_launch_args(d: DistributedConfig) -> list[str]:
    """launch_args with cluster_flags inserted before the script; without a strategy, the
    plain local line (one process on one node)."""
    if not d.enabled:
        return list(SCRIPT_ARGS)
    local = launch_args(d)
    at = local.index(SCRIPT_ARGS[0])
    return [*local[:at], *cluster_flags(d), *local[at:]]


def sbatch(config: ProjectConfig) -> str:
    """scripts/finetune.sbatch: one launcher per node, each running the local launch line."""
    d, s = config.distributed, config.distributed.slurm
    directives = {"job-name": s.job_name or _job_name(config.name), "nodes": d.num_machines,
                  "ntasks-per-node": 1, "gpus-per-node": d.num_processes if d.enabled else 1,
                  "cpus-per-task": s.cpus_per_task, "time": s.time,
                  "output": ".factory/logs/slurm-%j.log", "partition": s.partition,
                  "account": s.account, "qos": s.qos, "mem": s.mem}
    # Each argument shell-quoted except the variables cluster_flags wants expanded per node.
    words = [f'"{w}"' if w.startswith("$") else shlex.quote(w) for w in cluster_launch_args(d)]
    inner = 'exec "${PYTHON:-python}" ' + " ".join(words)
    return "\n".join([
        "#!/bin/bash",
        "# Written by `factory cluster` from training-config.json (distributed, distributed.slurm).",
        "# Submit from the project directory, with the environment that has model-factory:",
        "#     sbatch scripts/finetune.sbatch",
        "# When the job has finished, `factory run finetune` records it: it finds every stage",
        "# finished (same inputs, same run folder) and does not train again.",
        *(f"#SBATCH --{key}={value}" for key, value in directives.items() if value is not None),
        "set -euo pipefail",
        'cd "${SLURM_SUBMIT_DIR:-.}"',
        "if [[ ! -f training-config.json || ! -f scripts/finetune.json ]]; then",
        '    echo "submit from the project directory: sbatch scripts/finetune.sbatch" >&2',
        "    exit 2",
        "fi",
        "export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1",
        'MAIN_PROCESS_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "export MAIN_PROCESS_IP",
        "# One task per node: each node's launcher starts that node's processes.",
        f"srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c {shlex.quote(inner)}",
        "",
    ])


def _job_name(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.") or "project"
    return f"{safe}-finetune"
