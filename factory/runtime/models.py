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


def load(model_cfg: dict, root: Path, adapter: str | None = None):
    """Return (model, tokenizer) in eval mode, adapter applied when given."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = model_cfg["source"]
    if model_cfg.get("local"):
        source = str(root / source)
    kwargs = {"revision": model_cfg.get("revision"),
              "trust_remote_code": model_cfg.get("trust_remote_code", False)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(adapter and str(root / adapter) or source,
                                                  **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=pick_dtype(model_cfg["dtype"]),
                                                     **kwargs)
    except (OSError, ValueError) as exc:
        raise ScriptError("E_MODEL_LOAD", f"cannot load {model_cfg['source']}: {exc}") from exc
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(root / adapter))
    import torch

    if torch.cuda.is_available():
        model.to("cuda")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer
