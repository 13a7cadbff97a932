"""Adaptation (the paper's second phase): SFT, DPO or ORPO of the start adapter on the task's first n rows.

The start adapter is the warm-up's (D2LoRA) or a fresh one from `init.base` (LoRA, PiSSA, ...). With
no rows (data_size=0) nothing is trained: what is evaluated is the starting point itself, the warm-up adapter
or the base model (a fresh adapter of any init reproduces the base at step 0, so none is created).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .. import adapters, checkpointing, dist, fsdp, inits, modeling, training
from . import record
from .prepare import Plan, calibration_batches

log = logging.getLogger(__name__)


def start_adapter(plan: Plan, model, warmup_dir: Path | None) -> tuple[Any, Path | None]:
    """The trainable adapter training starts from, and (for base-rewriting inits) its saved initial state."""
    if warmup_dir is not None:
        return adapters.load_trainable(model, warmup_dir), None
    cfg = plan.cfg
    initial = plan.out_dir / "initial_adapter" if plan.init_base in inits.REWRITES_BASE else None
    return inits.create(model, cfg.lora, plan.init_base, int(cfg.seed), calibration_batches(plan), initial), initial


def run(plan: Plan, model, warmup_dir: Path | None, wandb_run,
        carried: record.Carried | None = None) -> tuple[Any, dict[str, Any] | None]:
    """(the model to evaluate, what metrics.json records about the adaptation, or None if nothing was trained).

    `carried` (record.carried_over): an interrupted attempt's intact finished adapter, used as is, or the checkpoint
    its training resumes from."""
    carried = carried or record.Carried()
    if len(plan.train_rows) == 0:
        return (adapters.load_frozen(model, warmup_dir) if warmup_dir is not None else model), None
    finished = carried.adapt
    if finished is not None:
        log.info("adaptation: finished by an interrupted attempt; its adapter %s is used as it is", finished["digest"])
        model = adapters.load_frozen(model, plan.out_dir / record.ADAPTER)
        return model, {**finished, "reused_from_interrupted_attempt": True, "seconds": 0.0, "init_seconds": 0.0}
    started = time.perf_counter()
    model, initial = start_adapter(plan, model, warmup_dir)
    init_seconds = round(time.perf_counter() - started, 2)
    cfg = plan.cfg
    start = {"digest": adapters.live_digest(model), "lora_b_norm": adapters.lora_b_norm(model)}
    log.info("adaptation: %s on %d %s rows", cfg.method.name, len(plan.train_rows), plan.task.name)
    key = record.checkpoint_key(record.config_hash(cfg), fsdp.enabled(cfg))
    callbacks = training.callbacks("adapt", wandb_run, cfg.train, key)
    trainer = plan.method.build_trainer(model, plan.tokenizer, plan.train_rows, plan.adapt_config, cfg.method, callbacks)
    stats = training.train(trainer, "adapt", carried.checkpoint)
    model = trainer.model
    adapter_dir = adapters.save(model, plan.out_dir / "adapter", initial_dir=initial)
    if fsdp.is_sharded(model):
        # Evaluated unsharded: the saved adapter on a fresh base on every rank (each rank then evaluates its share of
        # the rows). A sharded forward needs every rank in every forward pass, which per-rank rows cannot give. The
        # trainer's shards, optimizer and gradients are released first: FSDP runs are those short of memory.
        fsdp.release(trainer)
        del trainer, model
        model = adapters.load_frozen(modeling.load_model(plan.model_source, cfg.model, plan.device, plan.dtype),
                                     adapter_dir)
    if dist.is_main():
        checkpointing.remove(Path(plan.adapt_config.output_dir))
    return model, {**stats, "init_seconds": init_seconds, "start": start, "adapter": str(adapter_dir),
                   "digest": adapters.file_digest(adapter_dir), "lora_b_norm": adapters.lora_b_norm(model)}
