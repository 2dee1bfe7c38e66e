"""Loading a base model (a project folder or a hub id, by the same call) and an optional adapter."""
from __future__ import annotations

from pathlib import Path

from factory.runtime.report import ScriptError


def pick_dtype(requested: str):
    import torch

    if requested == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32  # CPUs and older GPUs: fp32 is the precision that is always right
    return getattr(torch, requested)


def source(model_cfg: dict, root: Path) -> str:
    return str(root / model_cfg["source"]) if model_cfg.get("local") else model_cfg["source"]


def _hub_kwargs(model_cfg: dict) -> dict:
    return {"revision": model_cfg.get("revision"),
            "trust_remote_code": model_cfg.get("trust_remote_code", False)}


def load_tokenizer(model_cfg: dict, root: Path, adapter: str | None = None):
    """The base model's tokenizer, or the one saved with an adapter; pad token always set."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(root / adapter) if adapter else source(model_cfg, root), **_hub_kwargs(model_cfg))
    except (OSError, ValueError) as exc:
        raise ScriptError("E_MODEL_LOAD", f"cannot load the tokenizer of "
                                          f"{model_cfg['source']}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load(model_cfg: dict, root: Path, adapter: str | None = None, load_in_4bit: bool = False):
    """Return (model, tokenizer) in eval mode.

    `adapter` names a checkpoint folder inside the project: a PEFT adapter is applied to the base
    model; a full model folder (config.json, no adapter_config.json) is loaded instead of it.
    `load_in_4bit` (CUDA only) quantizes the base to NF4 with bitsandbytes, for QLoRA.
    """
    from transformers import AutoModelForCausalLM

    if adapter and not (root / adapter / "adapter_config.json").exists():
        if not (root / adapter / "config.json").exists():
            raise ScriptError("E_MODEL_LOAD", f"{adapter} is neither a PEFT adapter "
                                              "(adapter_config.json) nor a model folder "
                                              "(config.json)")
        model_cfg = {**model_cfg, "source": str(root / adapter), "local": False,
                     "revision": None}
        adapter = None
    tokenizer = load_tokenizer(model_cfg, root, adapter)
    where = source(model_cfg, root)
    dtype = pick_dtype(model_cfg["dtype"])
    quantized = _quantized(dtype) if load_in_4bit else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **quantized,
                                                     **_hub_kwargs(model_cfg))
    except (OSError, ValueError) as exc:
        raise ScriptError("E_MODEL_LOAD", f"cannot load {where}: {exc}") from exc
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(root / adapter))
    import torch

    if torch.cuda.is_available() and not quantized:  # bitsandbytes placed it already
        model.to("cuda")
    model.eval()
    return model, tokenizer


def _quantized(dtype) -> dict:
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype), "device_map": {"": 0}}
