"""What every training phase shares: TRL arguments from the config, the prompt-length check, one timed train()
that resumes from the phase's latest checkpoint and stops cleanly on a stop signal."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from . import checkpointing, interrupt, tracking
from .errors import UserError

log = logging.getLogger(__name__)

# Settings of the recipe, not of TRL: when to checkpoint (checkpointing.py) changes no number.
RECIPE_ONLY = ("checkpoint_every", "checkpoint_keep")


def trainer_args(cfg: DictConfig, out_dir: Path, phase: Any, device: str, dtype: torch.dtype) -> dict[str, Any]:
    """Shared `train` settings, then the phase's own hyper-parameters, then its pass-through `args`.

    `out_dir` is where the phase's checkpoints go. When to save is decided by checkpointing.CheckpointCallback
    (steps, minutes or a stop signal), so the Trainer's own schedule is off; it keeps `checkpoint_keep` of them.
    Reporting is tracking.py's."""
    args = OmegaConf.to_container(cfg.train, resolve=True)
    keep = int(args.get("checkpoint_keep", 2))
    for key in RECIPE_ONLY:
        args.pop(key, None)
    args.update(
        output_dir=str(out_dir), seed=int(cfg.seed), report_to="none", save_strategy="no", save_total_limit=keep,
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


def callbacks(phase: str, wandb_run, train_cfg: Any) -> list:
    """What every training phase hands its trainer: the metric logger and the checkpoint saver."""
    return [tracking.PhaseLogger(phase, wandb_run), checkpointing.CheckpointCallback(checkpointing.schedule(train_cfg))]


def train(trainer, phase: str, checkpoint_dir: Path) -> dict[str, Any]:
    """Run the trainer from the phase's latest complete checkpoint (if any); the losses and timing a result records.

    Raises interrupt.Interrupted once the checkpoint of a stop signal is saved."""
    saver = next(c for c in trainer.callback_handler.callbacks if isinstance(c, checkpointing.CheckpointCallback))
    saver.trainer = trainer
    resume = checkpointing.latest(checkpoint_dir)
    if resume is not None:
        saver.loss_before = resume.loss_sum
        log.info("%s: resuming from step %d (%s)", phase, resume.step, resume.path)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume.path) if resume else None)
    interrupt.check(f"in the {phase} phase at step {output.global_step}, after saving a checkpoint")
    # The Trainer averages over the steps of this call only; the checkpoint carried the sum of the ones before.
    steps_before = resume.step if resume else 0
    loss_sum = saver.loss_before + float(output.training_loss) * (output.global_step - steps_before)
    history = [{"step": h["step"], **{k: float(v) for k, v in h.items() if isinstance(v, (int, float)) and k != "step"}}
               for h in trainer.state.log_history]
    losses = [h["loss"] for h in history if "loss" in h]
    return {"train_loss": loss_sum / max(output.global_step, 1), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "steps": int(output.global_step),
            "resumed_from_step": steps_before, "seconds": round(time.perf_counter() - start, 2), "log_history": history}
