"""Creating, loading, saving and fingerprinting LoRA adapters.

Adapters live under PEFT's "default" name (never "train", which clashes with nn.Module.train) and are
saved as safetensors. The digest lets a result prove which weights a phase started from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from transformers import set_seed

from . import dist, fsdp
from .errors import UserError

ADAPTER_NAME = "default"
ADAPTER_FILE = "adapter_model.safetensors"  # PEFT's weights file (safetensors, never a pickle)


def lora_config(lora_cfg: Any) -> LoraConfig:
    target = lora_cfg.target_modules
    return LoraConfig(
        r=int(lora_cfg.r), lora_alpha=int(lora_cfg.alpha), lora_dropout=float(lora_cfg.dropout),
        target_modules=target if isinstance(target, str) else list(target), task_type="CAUSAL_LM",
    )


def fresh(model, lora_cfg: Any, seed: int) -> PeftModel:
    """New LoRA matrices; seeded here because TRL creates adapters before applying its own seed."""
    set_seed(seed)
    return get_peft_model(model, lora_config(lora_cfg), adapter_name=ADAPTER_NAME)


def require_finite(adapter_dir: str | Path, fix: str) -> None:
    """Never train from, evaluate or cache non-finite weights. A NaN or inf in an adapter whose file digest is valid
    (written that way: a diverged warm-up, a bug, another version) would otherwise train to NaN losses and score
    garbage, silently, in every run that starts from it."""
    from safetensors.torch import load_file

    path = Path(adapter_dir) / ADAPTER_FILE
    bad = sorted(k for k, t in load_file(str(path)).items() if not torch.isfinite(t).all())
    if bad:
        raise UserError(f"{path} holds non-finite weights (NaN or inf in {len(bad)} tensors, first {bad[0]}): {fix}")


def _cached_entry_fix(adapter_dir: str | Path) -> str:
    return f"remove {adapter_dir} (the next run trains it again)."


def load_trainable(model, adapter_dir: str | Path) -> PeftModel:
    require_finite(adapter_dir, _cached_entry_fix(adapter_dir))
    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=ADAPTER_NAME, is_trainable=True)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    if trainable == 0:  # a silently frozen adapter would "train" and change nothing
        raise RuntimeError(f"adapter loaded from {adapter_dir} has no trainable parameters")
    return peft_model


def load_frozen(model, adapter_dir: str | Path) -> PeftModel:
    require_finite(adapter_dir, _cached_entry_fix(adapter_dir))
    return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=ADAPTER_NAME, is_trainable=False)


def save(peft_model: PeftModel, out_dir: str | Path, initial_dir: str | Path | None = None) -> Path:
    """Safetensors; with `initial_dir` (inits that rewrite the base) converted to apply to the original base.

    Every rank calls it; the main rank writes (the ranks hold the same weights; a model sharded by FSDP is gathered
    first, by every rank) and the others wait until the files are there, so that any rank may read them next."""
    out_dir = Path(out_dir)
    whole = {"state_dict": fsdp.adapter_state(peft_model)} if fsdp.is_sharded(peft_model) else {}
    if dist.is_main():
        peft_model.save_pretrained(str(out_dir), selected_adapters=[ADAPTER_NAME], safe_serialization=True,
                                   path_initial_model_for_weight_conversion=str(initial_dir) if initial_dir else None,
                                   **whole)
    dist.barrier()
    return out_dir


def digest(state_dict: dict[str, torch.Tensor]) -> str:
    """Order-independent fingerprint of adapter tensors (keys as PEFT saves them)."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        h.update(key.encode())
        h.update(state_dict[key].detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def live_digest(peft_model: PeftModel) -> str:
    return digest(get_peft_model_state_dict(peft_model, adapter_name=ADAPTER_NAME))


def file_digest(adapter_dir: str | Path) -> str:
    from safetensors.torch import load_file

    return digest(load_file(str(Path(adapter_dir) / ADAPTER_FILE)))


def lora_b_norm(peft_model: PeftModel) -> float:
    """Zero exactly for a fresh LoRA init (B = 0); non-zero once trained."""
    return float(sum(p.detach().float().norm() ** 2 for n, p in peft_model.named_parameters()
                     if "lora_B" in n and f".{ADAPTER_NAME}." in n) ** 0.5)
