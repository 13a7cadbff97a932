"""Fast by default on CUDA: each speed default decided in one small function, from the device, the attention
implementation and what is installed, and checked before the model loads (README: "Fast by default on CUDA").

Each default is the fastest setting that computes the same numbers as the plain one (or, for Liger, the same
operations by other kernels: close, not bit-exact; the README cites the bounds Liger's own tests hold them to);
length grouping changes which rows share a batch, so it is offered, not defaulted.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from .errors import UserError

# Attention implementations whose variable-length kernels skip the cross-row blocks of a padding-free batch: only
# there is padding-free faster (on SDPA/eager it is exact but slower: benchmarks/RESULTS.md).
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")
SWITCH = ("auto", True, False)


def load_kwargs(device: str, dtype: Any) -> dict[str, Any]:
    """`from_pretrained` arguments: on CUDA the weights go straight to this process's GPU in the run's dtype (bf16 by
    default), instead of a float copy in host memory first (about 16 GB per 8B job, so parallel jobs ran out of it).
    One device in the map, so accelerate and DDP treat the model as an ordinary one-GPU model."""
    if device == "cuda":
        return {"dtype": dtype, "device_map": {"": f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"}}
    return {"dtype": dtype}


def liger_installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def liger(setting: Any, device: str) -> bool:
    """`train.liger`: Liger's Triton kernels (RMSNorm, RoPE, SwiGLU) exist on CUDA only; auto = when installed there."""
    if setting is True and device != "cuda":
        raise UserError(f"train.liger=true needs CUDA (Liger's kernels are Triton GPU kernels) and device={device}: "
                        "use train.liger=auto or false.")
    if setting is True and not liger_installed():
        raise UserError("train.liger=true but liger-kernel is not installed: `pip install -e '.[gpu]'` "
                        "(or use train.liger=auto).")
    if setting == "auto":
        return device == "cuda" and liger_installed()
    return bool(setting)


def padding_free(setting: Any, method: str, attn_implementation: str | None, device: str, overlong: str) -> bool:
    """`train.padding_free` (SFT phases): one flattened row per batch, sequences kept apart by their position ids.

    auto = on where it is faster: flash-attention on CUDA. It is exact on any attention (tests/methods/test_sft.py),
    but TRL then enforces no max_length, so the rows must already fit it: refused with train.overlong=truncate, whose
    cut rows may still exceed it (TRL cuts their answers)."""
    if setting == "auto":
        return (method == "sft" and device == "cuda" and attn_implementation in VARLEN_ATTENTION
                and overlong != "truncate")
    if setting is True and method != "sft":
        raise UserError(f"train.padding_free=true: method={method} has no padding-free batches in TRL 1.16 (DPO turns "
                        "it off, ORPO has none); use train.padding_free=auto or false.")
    if setting is True and overlong == "truncate":
        raise UserError("train.padding_free=true with train.overlong=truncate: padding-free batches do not enforce "
                        "max_length, so use train.overlong=drop or error (or train.padding_free=auto).")
    return bool(setting)


def group_by_length(enabled: bool, method: str) -> dict[str, Any]:
    """`train.group_by_length`: batches of similar lengths (less padding, other batch composition, so off by default).
    Preference rows carry their `length` column (training.with_lengths), which the Trainer's column removal would
    drop before the sampler reads it."""
    if not enabled:
        return {}
    return {"train_sampling_strategy": "group_by_length", **({} if method == "sft" else {"remove_unused_columns": False})}


def trainer_options(train_cfg: Any, method: str, model_cfg: Any, device: str) -> dict[str, Any]:
    """The TRL arguments the `train` speed settings turn into for a phase of `method` (the warm-up's is sft)."""
    options: dict[str, Any] = {"use_liger_kernel": liger(train_cfg.get("liger", "auto"), device)}
    if padding_free(train_cfg.get("padding_free", "auto"), method, model_cfg.get("attn_implementation"), device,
                    train_cfg.overlong):
        options["padding_free"] = True
    options.update(group_by_length(bool(train_cfg.get("group_by_length", False)), method))
    return options
