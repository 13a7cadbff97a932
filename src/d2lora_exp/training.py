"""What every training phase shares: TRL arguments from the config, the over-long rows policy, one timed train()
that resumes from the phase's latest checkpoint and stops cleanly on a stop signal."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from omegaconf import DictConfig, OmegaConf

from . import checkpointing, cost, dist, fsdp, fsdp_checkpoint, speed, tracking
from .errors import UserError
from .resources import TokenCounter

log = logging.getLogger(__name__)

# Settings of the recipe, not of TRL: when to checkpoint (checkpointing.py) changes no number.
RECIPE_ONLY = ("checkpoint_every", "checkpoint_keep")
# TRL/Trainer settings the recipe sets itself (checkpoints, resume, reporting): refused in `train` and `*.args`.
RECIPE_OWNED = ("output_dir", "save_strategy", "save_steps", "save_total_limit", "save_only_model", "save_on_each_node",
                "ignore_data_skip", "resume_from_checkpoint", "restore_callback_states_from_checkpoint", "report_to",
                "overwrite_output_dir", "fsdp", "fsdp_config")
# Settings of the recipe that speed.py turns into TRL arguments for each phase's method and device.
SPEED = ("liger", "padding_free", "group_by_length")
ANSWER_COLUMNS = ("completion", "chosen", "rejected")  # SFT rows have the first, preference rows the other two


def trainer_args(cfg: DictConfig, out_dir: Path, phase: Any, device: str, dtype: torch.dtype,
                 what: str) -> dict[str, Any]:
    """Shared `train` settings, then the phase's own hyper-parameters, then its pass-through `args` (`what`.args).

    `out_dir` is where the phase's checkpoints go. When to save, how many to keep and where is
    checkpointing.CheckpointCallback's business (steps, minutes or a stop signal), so the Trainer's own schedule and
    rotation are off and a setting of them is refused: another output_dir would let runs resume each other's
    checkpoints. Reporting is tracking.py's. The speed settings (`SPEED`) become TRL arguments by speed.py, before
    `args`, which may still set those TRL arguments itself."""
    args = OmegaConf.to_container(cfg.train, resolve=True)
    for key in (*RECIPE_ONLY, *SPEED):
        args.pop(key, None)
    args.pop("overlong")  # ours (fit_rows), not TRL's
    extra = OmegaConf.to_container(phase.get("args") or OmegaConf.create({}), resolve=True)
    for source, values in (("train", args), (f"{what}.args", extra)):
        owned = sorted(set(values) & set(RECIPE_OWNED))
        if owned:
            raise UserError(f"{source} sets {owned}: checkpoints, reporting and sharding belong to the recipe "
                            "(train.checkpoint_every, train.checkpoint_keep, wandb.*, dist=fsdp); remove them.")
    args.update(
        output_dir=str(out_dir), seed=int(cfg.seed), report_to="none", save_strategy="no", save_total_limit=None,
        logging_first_step=True, use_cpu=device == "cpu", bf16=dtype == torch.bfloat16, disable_tqdm=False,
        learning_rate=float(phase["learning_rate"]), num_train_epochs=float(phase["num_train_epochs"]),
        # DDP (several processes): every trainable LoRA weight takes part in every forward pass, so DDP need not
        # search the graph for unused ones each step (the Trainer's default for a PeftModel). No effect on one process.
        ddp_find_unused_parameters=False,
        **fsdp.trainer_args(cfg),  # dist=fsdp with several processes: the Trainer shards the model (fsdp.py)
    )
    method = "sft" if what == "warmup" else str(cfg.method.name)
    args.update(speed.trainer_options(cfg.train, method, cfg.model, device))
    args.update(extra)
    if args.get("padding_free") and cfg.train.overlong == "truncate":
        raise UserError(f"{what}.args sets padding_free with train.overlong=truncate: padding-free batches do not "
                        "enforce max_length, so use train.overlong=drop or error.")
    return args


def with_lengths(rows: Dataset, tokenizer) -> Dataset:
    """Preference rows with the `length` train.group_by_length groups them by: prompt + longer answer (the width the
    pair is padded to). SFT rows need none: the sampler reads their tokenized input_ids."""
    if rows is None or len(rows) == 0:
        return rows
    prompts, answers = token_lengths(rows, tokenizer)
    return rows.add_column("length", [p + a for p, a in zip(prompts, answers)])


def token_lengths(rows: Dataset, tokenizer) -> tuple[list[int], list[int]]:
    """(prompt tokens, tokens of its longest answer) of each row, counted as TRL's trainers count them: prompt +
    answer tokenized as one text with the tokenizer's special tokens, plus the EOS they append to an answer."""
    prompts = list(rows["prompt"])
    prompt_lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    answer_lengths = [0] * len(prompts)
    for column in (c for c in ANSWER_COLUMNS if c in rows.column_names):
        answers = list(rows[column])
        full = tokenizer([p + a for p, a in zip(prompts, answers)])["input_ids"]
        for i, (ids, answer) in enumerate(zip(full, answers)):
            eos = 0 if answer.endswith(tokenizer.eos_token) else 1
            answer_lengths[i] = max(answer_lengths[i], len(ids) - prompt_lengths[i] + eos)
    return prompt_lengths, answer_lengths


def fit_rows(rows: Dataset, tokenizer, max_length: int, policy: str, what: str) -> tuple[Dataset, int]:
    """The rows to train on and how many were over-long (prompt + longest answer > max_length tokens), by
    `train.overlong`. TRL itself would cut such a sequence at its end: the answer loses its EOS (the model learns not
    to stop), and a prompt that fills max_length leaves nothing to learn (SFT and DPO drop the row silently, ORPO
    trains on NaN). `drop` removes them, `truncate` cuts their prompts from the left (`_cut_prompts`), `error`
    refuses the run; every count is logged and recorded (metrics.json `overlong`)."""
    if rows is None or len(rows) == 0:
        return rows, 0
    prompt_lengths, answer_lengths = token_lengths(rows, tokenizer)
    totals = [p + a for p, a in zip(prompt_lengths, answer_lengths)]
    over = [i for i, n in enumerate(totals) if n > max_length]
    if not over:
        return rows, 0
    where = "train.max_length (or its per-phase override in method.args / warmup.args)"
    if policy == "error":
        raise UserError(f"{len(over)} of {len(rows)} {what} rows are longer than train.max_length={max_length} tokens "
                        f"(prompt + answer, longest {max(totals)}): raise {where} to {max(totals)}, or set "
                        "train.overlong=drop or truncate.")
    if policy == "drop":
        if len(over) == len(rows):
            raise UserError(f"all {len(rows)} {what} rows are longer than train.max_length={max_length} tokens "
                            f"(prompt + answer, shortest {min(totals)}), so train.overlong=drop leaves nothing to "
                            f"train on: raise {where} to at least {min(totals)}, or set train.overlong=truncate.")
        dropped = set(over)
        kept = rows.select([i for i in range(len(rows)) if i not in dropped])
        log.info("%s: dropped %d of %d rows longer than train.max_length=%d tokens (train.overlong=drop)",
                 what, len(over), len(rows), max_length)
        return kept, len(over)
    cut = _cut_prompts(rows, tokenizer, max_length, over, answer_lengths)
    log.info("%s: cut %d of %d rows longer than train.max_length=%d tokens (train.overlong=truncate)",
             what, len(over), len(rows), max_length)
    return cut, len(over)


def _cut_prompts(rows: Dataset, tokenizer, max_length: int, over: list[int], answer_lengths: list[int]) -> Dataset:
    """train.overlong=truncate: each over-long prompt keeps its last tokens (the end of the chat, where the question
    is; a leading BOS is kept), as many as leave room for the whole answer but never fewer than half of max_length.
    An answer longer than the other half is then cut at its end by TRL (its own `keep_start` truncation)."""
    prompts = list(rows["prompt"])
    for i in over:
        ids = tokenizer(prompts[i], add_special_tokens=False)["input_ids"]
        keep = max(max_length - answer_lengths[i], max_length // 2) - 1  # -1: a BOS TRL's tokenizer call may add
        if keep >= len(ids):
            continue
        head = ids[:1] if ids[0] == tokenizer.bos_token_id else []
        prompts[i] = tokenizer.decode(head + ids[len(ids) - keep + len(head):], skip_special_tokens=False)
    return rows.remove_columns("prompt").add_column("prompt", prompts)


def callbacks(phase: str, wandb_run, train_cfg: Any, key: str) -> list:
    """What every training phase hands its trainer: the metric logger, the checkpoint saver and the token counter.
    `key` says whose checkpoints they are (the run's config and library versions, or the warm-up's cache key): only
    a checkpoint written for the same key is ever resumed from."""
    return [tracking.PhaseLogger(phase, wandb_run),
            checkpointing.CheckpointCallback(checkpointing.schedule(train_cfg), key), TokenCounter()]


def train(trainer, phase: str, resume: checkpointing.Checkpoint | None) -> dict[str, Any]:
    """Run the trainer from `resume` (the phase's latest complete checkpoint, checkpointing.latest, found by the
    phase, which also needs it to pick its W&B run); the losses and timing a result records.

    Raises interrupt.Interrupted once the checkpoint of a stop signal is saved (not when the signal came after the
    last step: the phase's result is then saved first, and the recipe stops at its next check)."""
    saver = next(c for c in trainer.callback_handler.callbacks if isinstance(c, checkpointing.CheckpointCallback))
    saver.trainer = trainer
    saver.resume = resume
    counter = next(c for c in trainer.callback_handler.callbacks if isinstance(c, TokenCounter))
    counter.attach(trainer)
    if getattr(trainer, "is_fsdp_enabled", False):  # the sharded model's checkpoints, gathered (fsdp_checkpoint.py)
        fsdp_checkpoint.attach(trainer)
    if resume is not None:
        log.info("%s: resuming from step %d (%s)", phase, resume.step, resume.path)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume.path) if resume else None)
    if output.global_step < trainer.state.max_steps:  # stopped by a signal, on every rank at once (CheckpointCallback)
        dist.check_interrupt(f"in the {phase} phase at step {output.global_step}, after saving a checkpoint")
    # The Trainer averages over the steps of this call only; the checkpoint carried the sum of the ones before.
    steps_before = resume.step if resume else 0
    loss_sum = saver.loss_before + float(output.training_loss) * (output.global_step - steps_before)
    history = [{"step": h["step"], **{k: float(v) for k, v in h.items() if isinstance(v, (int, float)) and k != "step"}}
               for h in trainer.state.log_history]
    losses = [h["loss"] for h in history if "loss" in h]
    return {"train_loss": loss_sum / max(output.global_step, 1), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "steps": int(output.global_step),
            "resumed_from_step": steps_before, "seconds": round(time.perf_counter() - start, 2),
            "seconds_all_attempts": counter.elapsed(), "log_history": history,
            # total_flos: the Trainer's estimate, 6 x the model's non-embedding parameters (frozen base and every LoRA
            # adapter alike) x the input_ids positions (padding included) of each batch; 0 where a batch has no
            # `input_ids` (ORPO's). Not a measurement; carried over a resume in the Trainer's state.
            "tokens": counter.totals(), "total_flos": float(trainer.state.total_flos),
            # Ours, by a stated formula (cost.py): real tokens x FLOPs per token of this model and phase.
            "flops": cost.phase_flops(trainer.model, trainer.args, counter.totals()),
            # dist=fsdp with several processes: the model was trained sharded (FSDP), not replicated (DDP).
            "sharded": fsdp.is_sharded(trainer.model)}
