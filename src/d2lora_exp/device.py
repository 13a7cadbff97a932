"""Device and dtype resolution, checked before any work so a CUDA request on a CPU box fails at once."""

from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                "device=cuda was requested but no CUDA GPU is visible to torch "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}). "
                "Run on a GPU machine with a CUDA build of torch, or pass device=cpu (or device=auto)."
            )
        return "cuda"
    if requested == "cpu":
        return "cpu"
    raise UserError(f"unknown device={requested!r}: use auto, cuda or cpu.")


def resolve_dtype(requested: str, device: str) -> torch.dtype:
    """bf16 on CUDA (the paper's setting), fp32 on CPU where bf16 matmuls are slow and lossy."""
    if requested == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    names = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
             "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}
    if requested not in names:
        raise UserError(f"unknown model.dtype={requested!r}: use auto, bfloat16, float16 or float32.")
    return names[requested]
