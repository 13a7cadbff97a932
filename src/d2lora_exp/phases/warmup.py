"""Warm-up (D2LoRA's first phase): SFT of fresh LoRA matrices on general data, trained once and shared.

The data is the prompt + chosen answer of orpo-dpo-mix-40k-style rows: `chosen` is a chat (user turns,
then the final assistant reply), learnt given everything before it in the model's own chat template.
The paper's point is that one warmed-up module serves many tasks, so the adapter is cached under a key
that hashes everything that determines it (model, LoRA settings, data content, hyper-parameters, seed,
library versions) and built once, even by concurrent jobs (build_once.py).
"""

from __future__ import annotations

import functools
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from omegaconf import DictConfig, OmegaConf

from .. import adapters, chat, checkpointing, dist, fsdp, inits, interrupt, modeling, tracking, training
from ..build_once import build_once, read_record
from ..data import sources
from ..errors import UserError
from ..files import write_json_atomic
from ..fingerprint import content_config, data_identity, library_versions, stable_hash
from ..methods import get_method

log = logging.getLogger(__name__)

WHAT = "warm-up data (orpo-dpo-mix-40k schema)"
FORMAT_VERSION = 2  # 2: entries built by build_once (digest-checked), models keyed by content
RECORD = "warmup.json"
WANDB_ID = "wandb_run_id"
# The warm-up's W&B run lives in `<run dir>/wandb-warmup/wandb/`, apart from the adaptation runs' `<run dir>/wandb/`:
# it produces the warm-up artifact they use, so `wandb sync` must upload it first (README, Weights & Biases).
WANDB_DIR = "wandb-warmup"


@dataclass
class WarmupPlan:
    rows: Dataset
    trl_config: Any
    material: dict[str, Any]
    overlong_rows: int  # dropped or cut by train.overlong

    @property
    def key(self) -> str:
        return stable_hash(self.material)


def load_pool(warmup_cfg: Any) -> Dataset:
    ds = sources.load(warmup_cfg.data, WHAT)
    sources.require_columns(ds, {"chosen": list}, WHAT)
    drop = set(warmup_cfg.get("drop_sources") or [])
    if drop and "source" in ds.column_names:
        ds = ds.filter(lambda src: src not in drop, input_columns="source")
    size = warmup_cfg.get("size")
    if size is not None:
        sources.require_size(int(size), ds, "warm-up pool (warmup.size)")
        ds = ds.select(range(int(size)))
    if len(ds) == 0:
        raise UserError(f"{WHAT}: no rows left after dropping sources {sorted(drop)}.")
    return ds


def sft_rows(rows: Dataset, tokenizer) -> Dataset:
    prompts, completions = [], []
    for i, messages in enumerate(rows["chosen"]):
        if not messages or messages[-1].get("role") != "assistant" or len(messages) < 2:
            raise UserError(f"{WHAT}: row {i} `chosen` must be user turn(s) followed by an assistant reply.")
        prompts.append(chat.render(tokenizer, [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]))
        completions.append(messages[-1]["content"])
    return Dataset.from_dict({"prompt": prompts, "completion": completions})


def key_material(cfg: DictConfig, model_source: str, dtype_name: str) -> dict[str, Any]:
    """Everything that determines the warm-up adapter; a local data file counts by its bytes, not its path."""
    warm = OmegaConf.to_container(cfg.warmup, resolve=True)
    data = data_identity(warm.pop("data"))
    base = cfg.init.get("base", "default")
    return {
        "format": FORMAT_VERSION,
        "model": modeling.identity(cfg.model, model_source, dtype_name),
        "lora": OmegaConf.to_container(cfg.lora, resolve=True),
        "init_base": base,
        "calibration": (content_config(OmegaConf.to_container(cfg.calibration, resolve=True))
                        if base in inits.NEEDS_CALIBRATION else None),
        "data": data,
        "warmup": warm,
        "train": {k: v for k, v in OmegaConf.to_container(cfg.train, resolve=True).items()
                  if k not in training.RECIPE_ONLY},
        "seed": int(cfg.seed),
        "versions": library_versions(),
        # The global batch is per_device_train_batch_size x processes: keyed only when several, so that the keys of
        # warm-ups trained by one process stay what they were.
        **({"world_size": dist.world_size()} if dist.active() else {}),
    }


def plan(cfg: DictConfig, tokenizer, model_source: str, out_dir: Path, device: str, dtype: torch.dtype) -> WarmupPlan:
    """The warm-up's rows and TRL config, checked like the adaptation's (prepare phase)."""
    rows = sft_rows(load_pool(cfg.warmup), tokenizer)
    material = key_material(cfg, model_source, str(dtype).removeprefix("torch."))
    args = training.trainer_args(cfg, checkpoint_dir(cfg, stable_hash(material)), cfg.warmup, device, dtype, "warmup")
    config = get_method("sft").make_config(args, cfg.method)
    rows, overlong = training.fit_rows(rows, tokenizer, int(args["max_length"]), cfg.train.overlong, "warm-up")
    return WarmupPlan(rows=rows, trl_config=config, overlong_rows=overlong, material=material)


def checkpoint_dir(cfg: DictConfig, key: str) -> Path:
    """The warm-up's checkpoints, beside the cache entry (not inside its temporary build directory, which a
    killed build leaves behind): whichever job builds this key next resumes from them."""
    return Path(cfg.paths.cache_dir) / "checkpoints" / f"warmup-{key}"


def _train(plan, model, target: Path):
    """Train fresh adapters into `target`; returns the clean base model for the phases that follow."""
    from .prepare import calibration_batches  # prepare imports this module

    cfg, warm = plan.cfg, plan.warmup
    log.info("warm-up %s: SFT of fresh LoRA on %d general rows", warm.key, len(warm.rows))
    checkpoints = Path(warm.trl_config.output_dir)
    # A resumed warm-up logs on into the W&B run of the attempt that wrote the checkpoint. Every rank resumes from
    # the checkpoint the main rank found.
    checkpoint_key = checkpointing.layout_key(warm.key, fsdp.enabled(cfg))  # a DDP warm-up's are not an FSDP one's
    resume = dist.on_main(checkpointing.latest, checkpoints, checkpoint_key)
    id_file = checkpoints / WANDB_ID  # absent when the attempt that wrote the checkpoint had W&B off
    wandb_id = id_file.read_text().strip() if resume is not None and id_file.is_file() else None
    wrun = tracking.start(cfg.wandb, plan.wandb_mode, plan.out_dir / WANDB_DIR, f"warmup-{warm.key[:8]}-s{cfg.seed}",
                          job_type="warmup", tags=[f"warmup:{warm.key}", f"seed:{cfg.seed}"], config=warm.material,
                          run_id=wandb_id)
    finished = False
    try:
        if wrun is not None:
            checkpoints.mkdir(parents=True, exist_ok=True)
            (checkpoints / WANDB_ID).write_text(wrun.id)
        initial = target / "initial" if plan.init_base in inits.REWRITES_BASE else None
        model = inits.create(model, cfg.lora, plan.init_base, int(cfg.seed), calibration_batches(plan), initial)
        callbacks = training.callbacks("warmup", wrun, cfg.train, checkpoint_key)
        trainer = get_method("sft").build_trainer(model, plan.tokenizer, warm.rows, warm.trl_config, cfg.method, callbacks)
        stats = training.train(trainer, "warmup", resume)
        adapters.save(model, target, initial_dir=initial)
        adapters.require_finite(target, "the warm-up diverged, so nothing was cached: lower warmup.learning_rate.")
        artifact = _log_artifact(plan, wrun, target, stats)
        finished = True
        if initial is not None and dist.is_main():
            shutil.rmtree(initial)
        if initial is not None or fsdp.is_sharded(model):
            # The base in memory is the residual W - BA, or sharded by FSDP: reload the original for what follows
            # (FSDP's shards, optimizer and gradients released first).
            if fsdp.is_sharded(model):
                fsdp.release(trainer)
            del trainer, model
            model = modeling.load_model(plan.model_source, cfg.model, plan.device, plan.dtype)
        else:
            model = model.unload()  # back to the clean base; later phases load the saved adapter
    except interrupt.Interrupted:
        if wrun is not None:
            tracking.after_stop("mark_preempting", wrun.mark_preempting)  # W&B: preempted, resumed under this id
        raise
    finally:
        if wrun is not None:
            tracking.after_stop("finish", wrun.finish, exit_code=0 if finished else 1)
    record = {"key": warm.key, "material": warm.material, **stats, "rows": len(warm.rows),
              "trained_by": str(plan.out_dir), "wandb_run": {"id": wrun.id, "name": wrun.name} if wrun else None,
              "wandb_artifact": artifact}
    if dist.is_main():
        write_json_atomic(target / RECORD, record)
    return model


def artifact_name(key: str) -> str:
    return f"warmup-{key}"


def _log_artifact(plan, wrun, target: Path, stats: dict[str, Any]) -> dict[str, str] | None:
    """The warm-up adapter as a W&B artifact, logged once, by the warm-up's own run: every run that starts from this
    cache entry uses this artifact (tracking.use_adapter). Staged: `target` is a temporary directory."""
    warm = plan.warmup
    metadata = {"key": warm.key, "adapter_digest": adapters.file_digest(target), "init_base": plan.init_base,
                "seed": int(plan.cfg.seed), "rows": len(warm.rows), "steps": stats.get("steps"),
                "train_loss": stats.get("train_loss"), "material": warm.material}
    return tracking.log_adapter(wrun, artifact_name(warm.key), target, metadata, staged=True)


def run(plan, model) -> tuple[Any, Path, dict[str, Any]]:
    """(the clean base model, the warm-up adapter dir, what metrics.json records about the warm-up)."""
    target = Path(plan.cfg.paths.cache_dir) / "warmups" / plan.warmup.key
    # Under a launcher every rank trains it, the main rank holding the cache lock and writing the entry.
    built = build_once(target, plan.warmup.key, functools.partial(_train, plan, model), together=True)
    if dist.is_main():
        checkpointing.remove(Path(plan.warmup.trl_config.output_dir))
    record = read_record(built.path, RECORD)
    summary = {k: record.get(k) for k in ("key", "train_loss", "first_loss", "last_loss", "steps", "rows", "trained_by",
                                           "wandb_run", "wandb_artifact", "tokens", "total_flos", "flops",
                                           "seconds", "seconds_all_attempts", "sharded")}
    summary.update(reused=built.reused, adapter=str(built.path), digest=adapters.file_digest(built.path))
    return (model if built.reused else built.value), built.path, summary
