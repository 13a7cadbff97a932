"""What every training phase shares: TRL arguments from the config, the prompt-length check, one timed train()."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from . import tracking
from .errors import UserError


def trainer_args(cfg: DictConfig, out_dir: Path, phase: Any, device: str, dtype: torch.dtype) -> dict[str, Any]:
    """Shared `train` settings, then the phase's own hyper-parameters, then its pass-through `args`.

    Checkpoints and reporting are the recipe's business (its phases save adapters, tracking.py logs), so
    the Trainer's own are switched off."""
    args = OmegaConf.to_container(cfg.train, resolve=True)
    args.update(
        output_dir=str(out_dir), seed=int(cfg.seed), report_to="none", save_strategy="no",
        logging_first_step=True, use_cpu=device == "cpu", bf16=dtype == torch.bfloat16, disable_tqdm=False,
        learning_rate=float(phase["learning_rate"]), num_train_epochs=float(phase["num_train_epochs"]),
    )
    args.update(OmegaConf.to_container(phase.get("args") or OmegaConf.create({}), resolve=True))
    return args


def check_prompt_lengths(rows, tokenizer, max_length: int, what: str) -> None:
    """A prompt that fills max_length leaves an empty completion: TRL then drops it silently (SFT) or
    trains on NaN log-probs (ORPO). Refuse instead, naming the length that would fit."""
    if rows is None or len(rows) == 0:
        return
    lengths = [len(ids) for ids in tokenizer(list(rows["prompt"]), add_special_tokens=False)["input_ids"]]
    too_long = [n for n in lengths if n >= max_length]
    if too_long:
        raise UserError(
            f"{len(too_long)} of {len(lengths)} {what} rows have prompts of >= train.max_length={max_length} tokens "
            f"(longest {max(lengths)}), leaving no room for the answer. Raise train.max_length above {max(lengths)} "
            "(or its per-phase override in method.args / warmup.args)."
        )


def train(trainer, callback: tracking.PhaseLogger) -> dict[str, Any]:
    """Run the trainer; the losses and timing a result records."""
    start = time.perf_counter()
    output = trainer.train()
    losses = [h["loss"] for h in callback.history if "loss" in h]
    return {"train_loss": float(output.training_loss), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "steps": int(output.global_step),
            "seconds": round(time.perf_counter() - start, 2), "log_history": callback.history}
