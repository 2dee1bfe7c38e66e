"""The project's configuration: one typed model per section of training-config.json.

Unknown keys are errors (a typo must not silently fall back to a default), every field is described
once here, and the JSON Schema in schemas/training-config.schema.json is generated from these models
(a test keeps the two identical). Errors name the file, the dotted field path and what was expected,
and never echo the value, which could be a secret.
"""
from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from factory.errors import FactoryError
from factory.metrics import DEFAULT_METRICS, REWARD_PREFIX, unknown



class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Section):
    name: str = Field(description="Base model: a folder inside the project (e.g. models/base) or a "
                                  "Hugging Face Hub id (e.g. Qwen/Qwen2.5-0.5B-Instruct).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin.")
    max_length: int = Field(512, ge=16, le=131072,
                            description="Token limit for training and evaluation. Always set "
                                        "explicitly; never inherited from a library default.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 where the GPU supports it, else float32.")
    trust_remote_code: bool = Field(False, description="Allow model code from the hub to run.")


class SplitConfig(_Section):
    val: float = Field(0.1, ge=0.0, le=0.5, description="Share of records for validation.")
    eval: float = Field(0.1, gt=0.0, le=0.5, description="Share of records held out for the "
                                                         "frozen eval split.")
    salt: str = Field("model-factory", description="Mixed into each record's hash before "
                                                   "bucketing; change it only to draw new splits.")

    @model_validator(mode="after")
    def _room_for_training(self) -> "SplitConfig":
        if self.val + self.eval >= 0.9:
            raise ValueError("val + eval must leave at least 10% of the data for training")
        return self


FormatChoice = Literal["auto", "messages", "trajectory", "sharegpt", "alpaca", "dpo", "kto",
                       "grpo", "prompt", "agent_trace"]


class DataConfig(_Section):
    raw_dir: str = Field("data/raw", description="Folder (inside the project) of raw data files: "
                                                 ".jsonl, .json, .parquet, .csv, and folders "
                                                 "described by a LLaMA-Factory dataset_info.json.")
    format: FormatChoice = Field(
        "auto", description="Record format of every file; auto detects it per file from its "
                            "first record.")
    formats: dict[str, FormatChoice] = Field(
        default_factory=dict, description="Per-file format by glob relative to raw_dir, e.g. "
                                          "{\"prefs/*.jsonl\": \"dpo\"}; wins over `format`.")
    datasets: list[str] | None = Field(
        None, description="Entries of a dataset_info.json to read (default: all).")
    on_error: Literal["fail", "skip"] = Field(
        "fail", description="fail: a bad record stops the gate and no split is written. skip: bad "
                            "records go to data/rejected.jsonl with their reason.")
    max_rejected_share: float = Field(
        0.5, ge=0.0, le=1.0, description="With on_error skip, fail anyway when more than this "
                                         "share of the records is rejected.")
    min_reward: float | None = Field(
        None, description="Keep only records whose reward (trajectory reward, trace "
                          "reward_score) is at least this; unscored records are kept.")
    label_threshold: float = Field(
        0.5, description="For KTO: a reward at or above this makes a record desirable.")
    tool_calls: Literal["keep", "openai", "functiongemma"] = Field(
        "keep", description="Write assistant tool calls as they come (keep), all as OpenAI "
                            "tool_calls, or all as FunctionGemma text.")
    on_too_long: Literal["fail", "drop"] = Field(
        "fail", description="A record longer than model.max_length tokens (rendered with the "
                            "chat template): fail the gate naming it, or drop it and count it.")
    min_train_records: int = Field(1, ge=1, description="Fewer training rows than this and the "
                                                         "format gate refuses.")
    split: SplitConfig = Field(default_factory=SplitConfig)
    min_eval_records: int = Field(20, ge=1, description="Fewer eval records than this cannot "
                                                        "support a verdict; baseline refuses.")


class LoraConfig(_Section):
    r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (lora_alpha).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or all-linear.")
    load_in_4bit: bool = Field(False, description="QLoRA: load the base model in 4-bit NF4 "
                                                  "(bitsandbytes) and train the adapter on top. "
                                                  "Needs a CUDA GPU; on CPU the run says so and "
                                                  "trains unquantized.")


class DpoConfig(_Section):
    beta: float = Field(0.1, gt=0, description="How far the policy may move from the reference "
                                               "(with LoRA, the base model with the adapter "
                                               "switched off).")


class KtoConfig(_Section):
    beta: float = Field(0.1, gt=0, description="KL strength, as in DPO.")
    desirable_weight: float = Field(1.0, gt=0, description="Loss weight of desirable examples; "
                                                           "raise it when they are the minority.")
    undesirable_weight: float = Field(1.0, gt=0, description="Loss weight of undesirable "
                                                             "examples.")


class GrpoConfig(_Section):
    num_generations: int = Field(4, ge=2, description="Completions sampled per prompt (the "
                                                      "group the advantages are computed in).")
    max_completion_length: int = Field(64, ge=1, description="Token budget of each completion.")
    beta: float = Field(0.0, ge=0, description="KL penalty against the base model (0: none, "
                                               "as TRL's default).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the completions.")
    rewards: list[str] | None = Field(
        None, description="Names of entries in `rewards` to train on (default: all of them), "
                          "combined with their weights.")


Method = Literal["sft", "dpo", "kto", "grpo"]


class StageConfig(_Section):
    method: Method = Field(description="This stage's training method.")
    epochs: float | None = Field(None, gt=0, description="Overrides training.epochs.")
    max_steps: int | None = Field(None, ge=1, description="Overrides training.max_steps.")
    learning_rate: float | None = Field(None, gt=0, lt=1, description="Overrides "
                                                                      "training.learning_rate.")


class TrainingConfig(_Section):
    method: Method = Field(
        "sft", description="Training method; the format gate writes the splits it needs.")
    stages: list[StageConfig] | None = Field(
        None, min_length=1,
        description="A chain of methods in one run, each stage training on from the adapter the "
                    "previous one left (e.g. sft, then dpo, then grpo). Set this or `method`, "
                    "not both. Unset: one stage of `method`.")
    backend: Literal["auto", "unsloth", "transformers"] = Field(
        "auto", description="auto: Unsloth when a CUDA GPU is present and the package imports, "
                            "else transformers + PEFT. unsloth: require it.")
    epochs: float = Field(3.0, gt=0, description="Passes over the training split.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps "
                                                          "(overrides epochs).")
    batch_size: int = Field(8, ge=1, description="Per-device batch size.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per step.")
    learning_rate: float = Field(2e-4, gt=0, lt=1, description="Peak learning rate.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    weight_decay: float = Field(0.0, ge=0.0)
    logging_steps: int = Field(5, ge=1, description="Update training-status.json every N steps.")
    save_steps: int = Field(50, ge=1, description="Write a resumable checkpoint every N steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept on disk.")
    assistant_only_loss: bool = Field(True, description="Train only on assistant turns (needs a "
                                                        "chat template with generation markers).")
    packing: bool = Field(False, description="SFT: pack several conversations into each "
                                             "max_length sequence (faster on many short rows).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the "
                                                            "backward pass: less memory, ~30% "
                                                            "slower.")
    seed: int = 42
    dpo: DpoConfig = Field(default_factory=DpoConfig)
    kto: KtoConfig = Field(default_factory=KtoConfig)
    grpo: GrpoConfig = Field(default_factory=GrpoConfig)

    @property
    def methods(self) -> list[str]:
        """The methods run, in order: the stages', or the one `method`."""
        return [s.method for s in self.stages] if self.stages else [self.method]

    def plan(self) -> list[dict]:
        """Every stage's method and its full step settings (the stage's overrides applied)."""
        stages = self.stages or [StageConfig(method=self.method)]
        return [{"method": s.method,
                 "epochs": s.epochs if s.epochs is not None else self.epochs,
                 "max_steps": s.max_steps if s.max_steps is not None else self.max_steps,
                 "learning_rate": s.learning_rate if s.learning_rate is not None
                 else self.learning_rate} for s in stages]

    @model_validator(mode="after")
    def _method_or_stages(self) -> "TrainingConfig":
        if self.stages and "method" in self.model_fields_set:
            raise ValueError("set training.method or training.stages, not both")
        return self

    @model_validator(mode="after")
    def _grpo_groups_fit_the_batch(self) -> "TrainingConfig":
        # TRL samples num_generations completions per prompt inside one generation batch of
        # batch_size * gradient_accumulation_steps completions; it must hold whole groups.
        if "grpo" not in self.methods:
            return self
        batch = self.batch_size * self.gradient_accumulation_steps
        if batch % self.grpo.num_generations:
            valid = [n for n in range(2, batch + 1) if batch % n == 0]
            raise ValueError(
                f"training.batch_size x gradient_accumulation_steps = {batch} completions must "
                f"be divisible by training.grpo.num_generations = {self.grpo.num_generations}; "
                f"valid num_generations for this batch: {valid or 'none (raise batch_size)'}")
        return self


_SLURM_WORD = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class DeepSpeedConfig(_Section):
    zero_stage: Literal[2, 3] = Field(2, description="ZeRO stage: 2 shards optimizer state and "
                                                     "gradients, 3 the parameters too.")
    offload_optimizer: Literal["none", "cpu", "nvme"] = Field(
        "none", description="Where ZeRO keeps optimizer state.")
    offload_params: Literal["none", "cpu", "nvme"] = Field(
        "none", description="Where ZeRO-3 keeps parameters (zero_stage 3 only).")
    gradient_clipping: float = Field(1.0, gt=0, description="Gradient norm clipping.")

    @model_validator(mode="after")
    def _params_offload_needs_zero3(self) -> "DeepSpeedConfig":
        if self.offload_params != "none" and self.zero_stage != 3:
            raise ValueError("distributed.deepspeed.offload_params needs zero_stage 3")
        return self


class FsdpConfig(_Section):
    sharding: Literal["FULL_SHARD", "SHARD_GRAD_OP"] = Field(
        "FULL_SHARD", description="What FSDP shards: parameters, gradients and optimizer state "
                                  "(FULL_SHARD) or gradients and optimizer state only.")
    cpu_offload: bool = Field(False, description="Keep sharded parameters on the CPU.")
    activation_checkpointing: bool = Field(False, description="FSDP's own activation "
                                           "checkpointing (instead of "
                                           "training.gradient_checkpointing).")


class SlurmConfig(_Section):
    job_name: str | None = Field(None, pattern=_SLURM_WORD,
                                 description="Job name (default: the project name).")
    partition: str | None = Field(None, pattern=_SLURM_WORD, description="--partition.")
    account: str | None = Field(None, pattern=_SLURM_WORD, description="--account.")
    qos: str | None = Field(None, pattern=_SLURM_WORD, description="--qos.")
    time: str = Field("04:00:00", pattern=r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$",
                      description="Wall-clock limit, [days-]hours:minutes:seconds.")
    cpus_per_task: int = Field(8, ge=1, description="CPU cores per node.")
    mem: str | None = Field(None, pattern=r"^\d+[KMGT]?$", description="Memory per node, "
                                                                        "e.g. 200G.")


class DistributedConfig(_Section):
    strategy: Literal["none", "ddp", "deepspeed", "fsdp"] = Field(
        "none", description="none: one process. ddp, deepspeed, fsdp: the finetune script runs "
                            "under `accelerate launch` with a generated accelerate config "
                            "(scripts/accelerate.json); ddp on a machine without CUDA uses the "
                            "gloo backend on CPU processes.")
    num_processes: int = Field(2, ge=1, le=1024, description="Processes (GPUs) per machine.")
    num_machines: int = Field(1, ge=1, le=4096, description="Machines (nodes); above 1, use the "
                                                            "SLURM script (`factory cluster`).")
    main_process_port: int = Field(0, ge=0, le=65535, description="Rendezvous port; 0 picks a "
                                   "free one on a single machine (a cluster job uses 29500).")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="accelerate's mixed precision; model.dtype still sets the weights.")
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    fsdp: FsdpConfig = Field(default_factory=FsdpConfig)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)

    @property
    def enabled(self) -> bool:
        return self.strategy != "none"

    @property
    def world_size(self) -> int:
        return self.num_processes * self.num_machines if self.enabled else 1

    def training_view(self) -> dict:
        """What changes the training itself (and so the finetune gate's inputs): not where or
        under which scheduler it runs."""
        if not self.enabled:
            return {"strategy": "none"}
        keep = {"strategy", "num_processes", "num_machines", "mixed_precision"}
        if self.strategy in ("deepspeed", "fsdp"):
            keep.add(self.strategy)
        return self.model_dump(include=keep)


class RewardConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$",
                      description="Name of the reward; as an eval metric it is reward:<name>.")
    type: Literal["reference_match", "format_regex", "json_valid", "syntax_valid",
                  "code_executes", "tool_call_valid", "efficiency", "learned", "python",
                  "command"] = Field(
        description="reference_match: the answer equals the example's reference answer (task "
                    "completion; tool calls compared as calls, text after normalisation). "
                    "format_regex: the answer matches `pattern`. json_valid: the answer is JSON. "
                    "syntax_valid: its Python code parses. code_executes: its Python code runs "
                    "to exit 0 in the sandbox (followed by the example's `tests` when it has "
                    "any). tool_call_valid: share of its calls whose arguments fit the declared "
                    "tools. efficiency: short answers and few tool calls (length against the "
                    "reference, or `budget_tokens` without one). learned: P(desirable) from a "
                    "logistic regression trained on the labelled `examples`. python: "
                    "`function(answer, context)` from the project's `file`. command: the "
                    "program in `command` is given the answer (see `input`) and prints its "
                    "score as JSON.")
    weight: float = Field(1.0, ge=0.0, description="Weight in a combined reward.")
    pattern: str | None = Field(None, description="format_regex: the regular expression.")
    fullmatch: bool = Field(False, description="format_regex: the whole answer must match, not "
                                               "just a part of it.")
    timeout_s: float = Field(5.0, gt=0, le=300, description="code_executes, command: wall-clock "
                                                             "limit per answer, in seconds.")
    memory_mb: int = Field(256, ge=32, le=65536, description="code_executes: address-space "
                                                             "limit.")
    budget_tokens: int | None = Field(None, ge=1, description="efficiency: the length (in "
                                                              "whitespace-separated tokens) "
                                                              "that scores 1 when an example "
                                                              "has no reference answer.")
    examples: str | None = Field(None, description="learned: JSONL file inside the project (e.g. "
                                                   "rewards/labels.jsonl) of {\"text\", "
                                                   "\"label\"} or KTO-shaped {\"prompt\", "
                                                   "\"completion\", \"label\"} rows.")
    file: str | None = Field(None, description="python: the .py file inside the project (e.g. "
                                               "rewards/brevity.py) that defines the function.")
    function: str = Field("reward", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                          description="python: the function in `file`, called as "
                                      "function(answer, context) -> number.")
    command: list[str] | None = Field(
        None, min_length=1, description="command: the program and its arguments as an argv list "
                                        "(never a shell string), e.g. [\"python\", "
                                        "\"rewards/story.py\", \"{file}\"]. A bare name is "
                                        "looked up on PATH, a relative path from `cwd`. It must "
                                        "print {\"score\": number, \"details\": ...} or a bare "
                                        "number on stdout and exit 0.")
    input: Literal["stdin", "file", "json"] = Field(
        "stdin", description="command: how the answer reaches it. stdin: the answer text on "
                             "stdin. file: written to a temp file whose path replaces `{file}` "
                             "in the arguments. json: on stdin, {\"completion\", \"prompt\", "
                             "\"reference\", \"id\", \"tools\", \"tests\", \"meta\"}.")
    cwd: str | None = Field(None, description="command: working directory inside the project "
                                              "(default: the project root).")
    depends_on: list[str] = Field(
        default_factory=list, description="command: project files or folders it reads besides "
                                          "those its argv names (tests, fixtures); their "
                                          "content is part of the cache key and makes the "
                                          "baseline stale when it changes.")
    cache: bool = Field(True, description="command: reuse the score of an answer already run "
                                          "with the same command, input and files "
                                          "(.factory/cache/rewards/).")

    @model_validator(mode="after")
    def _pattern_compiles(self) -> "RewardConfig":
        if self.type == "format_regex":
            if not self.pattern:
                raise ValueError("format_regex needs a pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return self

    @model_validator(mode="after")
    def _files_are_in_the_project(self) -> "RewardConfig":
        if self.type == "python" and not (self.file or "").endswith(".py"):
            raise ValueError("a python reward needs `file`: a .py file inside the project, "
                             "e.g. rewards/brevity.py")
        if self.type == "learned" and not self.examples:
            raise ValueError("a learned reward needs `examples`: a JSONL file of labelled "
                             "examples inside the project, e.g. rewards/labels.jsonl")
        paths = [("file", self.file), ("examples", self.examples), ("cwd", self.cwd),
                 *(("depends_on", value) for value in self.depends_on)]
        for field, value in paths:
            # Checked here so the config is refused before any gate runs; build() checks again
            # where the path resolves (a symlink can still point out of the project).
            if value and (value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value)
                          or ".." in re.split(r"[/\\]", value)):
                raise ValueError(f"{field} must be a path relative to the project, with no "
                                 f"'..' part")
        return self

    @model_validator(mode="after")
    def _command_is_an_argv(self) -> "RewardConfig":
        if self.type != "command":
            return self
        if not self.command or not self.command[0]:
            raise ValueError("a command reward needs `command`: the program and its arguments "
                             "as a list, e.g. [\"python\", \"rewards/story.py\"]")
        program, arguments = self.command[0], self.command[1:]
        if ".." in re.split(r"[/\\]", program) and not program.startswith("/"):
            raise ValueError("command[0] must not leave the project with '..'")
        if "{file}" in program:
            raise ValueError("command[0] is the program; `{file}` goes in an argument")
        has_placeholder = any("{file}" in a for a in arguments)
        if self.input == "file" and not has_placeholder:
            raise ValueError("input \"file\" needs `{file}` in an argument of command, where "
                             "the answer's temp file path goes")
        if self.input != "file" and has_placeholder:
            raise ValueError(f"`{{file}}` is replaced only with input \"file\"; input "
                             f"\"{self.input}\" sends the answer on stdin")
        return self


class EvalConfig(_Section):
    metrics: list[str] = Field(
        default_factory=lambda: list(DEFAULT_METRICS),
        description="Metrics computed on the frozen eval split: loss, exact_match, "
                    "normalized_match, tool_parse, tool_name, tool_args_exact, tool_args_valid, "
                    "and reward:<name> for any entry of `rewards`. Tool metrics count only "
                    "examples whose reference calls a tool.")
    primary_metric: str = Field("exact_match",
                                description="The metric the candidate must improve to pass.")
    min_delta: float = Field(0.05, ge=0.0, description="Smallest improvement of the primary "
                                                       "metric that counts.")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="Confidence of the bootstrap "
                                                                "and credible intervals.")
    bootstrap_resamples: int = Field(10000, ge=100, le=1_000_000)
    guards: dict[str, float] = Field(
        default_factory=lambda: {"loss": 0.0},
        description="Metric -> largest tolerated regression (in the metric's units, point "
                    "estimate).")
    vs_promoted: Literal["not_worse", "better", "off"] = Field(
        "not_worse", description="Against the model promoted last: not_worse: the primary metric "
                                 "may fall by at most promoted_tolerance; better: it must beat it "
                                 "by the same rule as the baseline; off: no comparison.")
    promoted_tolerance: float = Field(0.0, ge=0.0, description="Largest tolerated drop of the "
                                                               "primary metric below the "
                                                               "promoted model.")
    max_new_tokens: int = Field(64, ge=1, le=8192, description="Generation budget per example.")
    seed: int = 1234
    require_dominance: bool = Field(
        False, description="Pass only if the candidate Pareto-dominates the base model across "
                           "the eval data's environments (records' `env`/`task`): significantly "
                           "worse on the primary metric in none, significantly better in at "
                           "least one.")

    @model_validator(mode="after")
    def _judged_metrics_are_computed(self) -> "EvalConfig":
        judged = [self.primary_metric, *self.guards]
        missing = [m for m in judged if m not in self.metrics]
        if missing:
            raise ValueError(f"{', '.join(missing)} must also be listed in eval.metrics")
        return self


GgufType = Literal["F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1",
                   "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"]
HUB_REPO = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


class GgufConfig(_Section):
    quantizations: list[GgufType] = Field(
        default_factory=lambda: ["Q8_0"], min_length=1,
        description="One .gguf file per type. F32/F16/BF16/Q8_0/Q5_x/Q4_x are written with the "
                    "gguf package; K-quants (Q6_K, Q4_K_M, ...) need llama.cpp's quantizer "
                    "(llama-cpp-python).")
    min_agreement: float | None = Field(
        None, ge=0.0, le=1.0,
        description="Share of parity probes whose greedy output must equal the merged model's; "
                    "null takes the quant type's default (1.0 for F32/F16, lower for quants).")


class OllamaConfig(_Section):
    model_name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9._:/_-]*$",
                                   description="Name for `ollama create`; default: the project "
                                               "name.")
    quantization: GgufType | None = Field(None, description="Which GGUF the Modelfile uses (FROM); "
                                                            "default: the first in gguf.")
    system: str | None = Field(None, description="SYSTEM prompt baked into the Modelfile.")
    template: str | None = Field(
        None, description="A Go TEMPLATE to use as is. By default it is measured from the "
                          "tokenizer's chat template and checked to render the same text.")
    parameters: dict[str, int | float | str] = Field(
        default_factory=lambda: {"temperature": 0.0},
        description="PARAMETER lines. Stop tokens from the tokenizer are always added.")
    create: bool = Field(True, description="Run `ollama create` when an ollama binary is on PATH.")


class HubConfig(_Section):
    repo_id: str | None = Field(None, description="Hub repository, owner/name. The token comes "
                                                  "only from HF_TOKEN or `hf auth login`.")
    private: bool = Field(True, description="Create the repository private.")
    revision: str = Field("main", description="Branch to push to.")
    push: list[Literal["adapter", "merged", "gguf"]] = Field(
        default_factory=lambda: ["adapter"], min_length=1,
        description="Which outputs to upload (each must also be in deploy.outputs). The model card "
                    "always goes along.")
    verify: bool = Field(True, description="After the upload, download the repository again and "
                                           "load it with from_pretrained.")

    @model_validator(mode="after")
    def _repo_id_shape(self) -> "HubConfig":
        if self.repo_id is not None and not HUB_REPO.match(self.repo_id):
            raise ValueError(f"repo_id {self.repo_id!r} is not of the form owner/name")
        return self


class DeployConfig(_Section):
    outputs: list[Literal["adapter", "merged", "gguf", "ollama", "hub"]] = Field(
        default_factory=lambda: ["adapter", "merged"],
        description="What deploy writes: adapter, merged (16-bit weights), gguf, ollama "
                    "(a Modelfile over a GGUF), hub (push to the Hugging Face Hub).")
    gguf: GgufConfig = Field(default_factory=GgufConfig)
    ollama: OllamaConfig = Field(default_factory=OllamaConfig)
    hub: HubConfig = Field(default_factory=HubConfig)

    @model_validator(mode="after")
    def _outputs_have_what_they_need(self) -> "DeployConfig":
        needs = {"gguf": "merged", "ollama": "gguf"}
        for output, needed in needs.items():
            if output in self.outputs and needed not in self.outputs:
                raise ValueError(f"output {output!r} is made from {needed!r}: add it to outputs")
        if "ollama" in self.outputs and self.ollama.quantization not in (
                None, *self.gguf.quantizations):
            raise ValueError(f"ollama.quantization {self.ollama.quantization} is not one of "
                             f"gguf.quantizations")
        if "hub" in self.outputs:
            if self.hub.repo_id is None:
                raise ValueError("output 'hub' needs hub.repo_id")
            missing = [p for p in self.hub.push if p not in self.outputs]
            if missing:
                raise ValueError(f"hub.push names {', '.join(missing)}, not in outputs")
        return self


class HardwareNote(_Section):
    profile: str = Field(description="The hardware profile the settings came from (see "
                                     "`factory profile`).")
    detected: str = Field(description="The machine it was applied on, in one line.")
    recommended_model: str | None = Field(None, description="The model size the profile "
                                                            "suits (advice; model.name is "
                                                            "yours to pick).")
    applied: list[str] = Field(default_factory=list, description="Dotted fields the profile "
                                                                 "wrote.")
    at: str = Field(description="When it was applied (UTC, ISO 8601).")


class TrackingConfig(_Section):
    backend: Literal["none", "mlflow", "tensorboard"] = Field(
        "none", description="Log every gate run (params, metrics, artifacts) to MLflow, or the "
                            "training curves to TensorBoard; also the trainers' report_to.")
    uri: str | None = Field(None, description="MLflow tracking URI. Default: the file store "
                            "in the project, .factory/mlruns. A remote server (http, https, "
                            "databricks, ...) needs allow_remote.")
    experiment: str | None = Field(None, description="MLflow experiment (default: the project "
                                                     "name).")
    allow_remote: bool = Field(False, description="Allow a tracking URI off this machine: the "
                               "project's params and metrics are sent there.")

    @model_validator(mode="after")
    def _remote_needs_consent(self) -> "TrackingConfig":
        scheme = self.uri.split("://", 1)[0].lower() if self.uri and "://" in self.uri else None
        if scheme not in (None, "file") and not self.allow_remote:
            raise ValueError(f"tracking.uri {scheme}://... sends the project's metrics off this "
                             f"machine: set tracking.allow_remote true to allow it")
        if scheme == "file" or (self.uri and scheme is None and self.uri.startswith("/")):
            raise ValueError("tracking.uri: a local store goes inside the project; give a "
                             "relative folder (e.g. .factory/mlruns) or leave it unset")
        return self


class ProjectConfig(_Section):
    name: str = Field(description="Project name, used for output names.")
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    distributed: DistributedConfig = Field(
        default_factory=DistributedConfig,
        description="Run finetune on several processes, GPUs or machines under an existing "
                    "engine (accelerate launch: DDP, DeepSpeed ZeRO-2/3, FSDP; SLURM).")
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    rewards: list[RewardConfig] = Field(
        default_factory=list, description="Verifiable rewards, usable as eval metrics "
                                          "(reward:<name>) and by reward-based training.")
    hardware: HardwareNote | None = Field(
        None, description="Written by `factory profile --apply`: which hardware profile set "
                          "the training settings, and on what machine. Informational.")

    @model_validator(mode="after")
    def _metrics_exist(self) -> "ProjectConfig":
        names = [r.name for r in self.rewards]
        if len(set(names)) != len(names):
            raise ValueError("rewards: two entries share a name")
        if "grpo" in self.training.methods:
            wanted = self.training.grpo.rewards
            if not self.rewards:
                raise ValueError("training.method grpo needs at least one entry in rewards")
            missing = sorted(set(wanted or []) - set(names))
            if missing:
                raise ValueError(f"training.grpo.rewards: no reward named {', '.join(missing)} "
                                 f"in rewards (defined: {', '.join(names)})")
        self._distributed_fits()
        bad = unknown(self.eval.metrics, set(names))
        if bad:
            raise ValueError(f"eval.metrics: unknown {', '.join(bad)} (built in: "
                             f"{', '.join(DEFAULT_METRICS)}; or {REWARD_PREFIX}<name> of an "
                             f"entry in rewards)")
        return self


    def _distributed_fits(self) -> None:
        d, t = self.distributed, self.training
        if not d.enabled:
            return
        if d.world_size < 2:
            raise ValueError(f"distributed.strategy {d.strategy} needs at least 2 processes in "
                             f"all: raise distributed.num_processes or num_machines")
        if t.backend == "unsloth":
            raise ValueError("training.backend unsloth runs one process; set distributed."
                             "strategy none, or training.backend auto or transformers")
        if self.lora.load_in_4bit and d.strategy in ("deepspeed", "fsdp"):
            raise ValueError(f"lora.load_in_4bit (QLoRA) with distributed.strategy "
                             f"{d.strategy} is not supported here; use strategy ddp, or "
                             f"load_in_4bit false")


def json_schema() -> dict:
    schema = ProjectConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://model-factory.dev/schemas/training-config.schema.json"
    schema["title"] = "model-factory training-config.json"
    return schema


def load_config(path: Path) -> ProjectConfig:
    """Read and validate a config file, JSON or YAML; every problem is reported at once, by
    field path, with its line in a YAML file and, for an unknown key, the keys allowed there."""
    from factory import config_source

    raw, lines = config_source.read(path)
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        errors = [_problem(path, e, lines)
                  for e in exc.errors(include_input=False, include_url=False)]
        shown = "; ".join(f"{e['field']}" + (f" (line {e['line']})" if "line" in e else "")
                          + f": {e['expected']}" for e in errors)
        raise FactoryError("E_CONFIG", f"{path}: {len(errors)} invalid field(s): {shown}",
                           details={"file": str(path), "errors": errors}) from None


def _problem(path: Path, error: dict, lines: dict[tuple, int]) -> dict:
    loc = tuple(error["loc"])
    problem = {"file": str(path), "field": _dotted(loc), "expected": error["msg"],
               "type": error["type"]}
    if error["type"] == "extra_forbidden":
        allowed = allowed_keys(loc[:-1])
        if allowed:
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            problem["allowed"] = allowed
            problem["expected"] = (f"unknown key{f' (did you mean {close[0]}?)' if close else ''}"
                                   f"; allowed here: {', '.join(allowed)}")
    # A validator's error sits on its section; the nearest line above it is the section's.
    for depth in range(len(loc), 0, -1):
        if loc[:depth] in lines:
            problem["line"] = lines[loc[:depth]]
            break
    return problem


def allowed_keys(loc: tuple) -> list[str]:
    """The keys the config accepts in the mapping at `loc` (empty: not a section)."""
    model: type[BaseModel] = ProjectConfig
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list: the list's item model is already current
        field = model.model_fields.get(str(part))
        nested = _model_in(field.annotation) if field else None
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def _model_in(annotation) -> type[BaseModel] | None:
    """The section model an annotation holds: X, X | None, list[X]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _dotted(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
