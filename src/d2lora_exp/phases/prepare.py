"""Prepare: every check and every input of a run, before any model is loaded.

A bad value, a missing file or a wrong column fails here in seconds with one line; what comes out is
a `Plan`, a plain object holding everything the later phases need (rows, TRL configs, evaluators).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from datasets import Dataset
from omegaconf import DictConfig, OmegaConf

from .. import dist, evaluation, fsdp, inits, modeling, settings, tracking, training
from ..config import init_label
from ..data import build as data_build
from ..data import sources, subsets
from ..device import resolve_device, resolve_dtype
from ..errors import UserError
from ..files import check_writable
from ..methods import get_method
from ..tasks import get_task
from ..tasks.base import Task
from . import warmup


@dataclass
class Plan:
    cfg: DictConfig
    out_dir: Path
    device: str
    dtype: torch.dtype
    init_base: str
    init_label: str
    method: Any  # the methods/<name>.py module
    task: Task
    model_source: str
    tokenizer: Any
    pool_size: int
    data_size: int  # rows drawn from the pool: data_size, or the pool's size for data_size=all
    subset_hash: str
    train_rows: Dataset  # empty at data_size=0: the initialisation itself is evaluated
    overlong_rows: int  # of the data_size rows drawn, dropped or cut by train.overlong
    adapt_config: Any
    warmup: warmup.WarmupPlan | None
    calibration_texts: list[str] | None
    evaluators: list[evaluation.Evaluator]
    wandb_mode: str  # decided once (tracking.decide_mode); every W&B run of the job uses it

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def summary(self) -> dict[str, Any]:
        """What metrics.json says about the run before anything is trained."""
        cfg = self.cfg
        return {"init": self.init_label, "init_base": self.init_base, "method": cfg.method.name, "task": self.task.name,
                "data_size": self.data_size, "data_size_requested": cfg.data_size, "seed": int(cfg.seed),
                "model": cfg.model.name, "device": self.device,
                "dtype": self.dtype_name, "subset_hash": self.subset_hash, "pool_size": self.pool_size,
                "train_rows": len(self.train_rows), "warmup_rows": len(self.warmup.rows) if self.warmup else 0,
                "overlong": {"policy": cfg.train.overlong, "adapt": self.overlong_rows,
                             "warmup": self.warmup.overlong_rows if self.warmup else None},
                "wandb_mode": self.wandb_mode,
                "dpo_reference": cfg.method.get("reference") if cfg.method.name == "dpo" else None,
                "variant": cfg.get("variant"), "evaluators": [e.name for e in self.evaluators],
                "torch_threads": torch.get_num_threads(), "trl_args": self.trl_args()}

    def trl_args(self) -> dict[str, Any]:
        """Every TRL/Trainer argument each phase actually trains with (defaults included, secrets dropped): what
        the config does not say, e.g. the optimizer, Adam's betas, max_grad_norm, the TRL version's defaults."""
        phases = {"adapt": self.adapt_config, "warmup": self.warmup.trl_config if self.warmup else None}
        return {name: tracking.scrub(json.loads(json.dumps(config.to_dict(), default=str)))
                for name, config in phases.items() if config is not None}


def adapt_checkpoints(out_dir: Path) -> Path:
    """The adaptation's checkpoints: inside the run directory, kept when a dead attempt is moved aside."""
    return out_dir / "checkpoints" / "adapt"


ALL = "all"  # data_size=all: the whole training pool, whatever its size (the paper's last titles point)


def check_data_size(value: Any) -> int | Literal["all"]:
    """An integer >= 0 or `all`; checked before any data is read, so a typo fails in seconds."""
    if value == ALL:
        return ALL
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"data_size={value!r} is not valid: use an integer >= 0 or `all` (the whole training pool).")
    if value < 0:
        raise UserError(f"data_size={value} is negative; use an integer >= 0 (0 evaluates the initialisation).")
    return value


def resolve_data_size(requested: int | Literal["all"], pool_size: int, what: str) -> int:
    """The number of rows to draw. `all` is the pool's size, recorded as such: an empty pool is refused rather
    than silently turning the run into an evaluation of the initialisation (data_size=0)."""
    if requested != ALL:
        return requested
    if pool_size == 0:
        raise UserError(f"data_size=all: the {what} is empty; give it rows or use data_size=0 to evaluate the init.")
    return pool_size


def _train_rows(method, task: Task, cfg: DictConfig, requested: int | Literal["all"], tokenizer) -> tuple[Dataset, str, int, int]:
    """The training rows, their subset hash, the pool's size and the number of rows drawn."""
    pool = task.train_pool()
    what = f"{task.name} training pool"
    n = resolve_data_size(requested, len(pool), what)
    sources.require_size(n, pool, what)
    subset, subset_hash = subsets.nested_subset(pool, n, int(cfg.task.train.subset_seed))
    rows = task.preference_rows(subset, tokenizer) if method.DATASET_KIND == "preference" else task.sft_rows(subset, tokenizer)
    return rows, subset_hash, len(pool), n


def _calibration_texts(cfg: DictConfig, tokenizer) -> list[str] | None:
    """eva/corda initialise from activations: the first rows of a chat set (the warm-up data by default)."""
    if cfg.init.get("base", "default") not in inits.NEEDS_CALIBRATION:
        return None
    pool = warmup.load_pool(OmegaConf.merge(cfg.warmup, {"data": cfg.calibration.data, "size": None}))
    rows = warmup.sft_rows(pool.select(range(min(int(cfg.calibration.rows), len(pool)))), tokenizer)
    return [p + c for p, c in zip(rows["prompt"], rows["completion"])]


STRATEGIES = ("ddp", fsdp.STRATEGY)


def dist_check(cfg: DictConfig) -> None:
    """How the processes of a launcher share the work (`dist=...`), and enough GPUs for them, before the model loads."""
    strategy = cfg.dist.strategy
    if strategy not in STRATEGIES:
        raise UserError(f"dist.strategy={strategy!r} is not one of {list(STRATEGIES)}: use dist=ddp (a whole copy of "
                        "the model on every GPU) or dist=fsdp (the model sharded across them).")
    fsdp.check(cfg)
    if fsdp.enabled(cfg) and resolve_device(cfg.device) == "cpu":
        fsdp.enable_on_cpu()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if dist.active() and resolve_device(cfg.device) == "cuda" and torch.cuda.device_count() < local:
        raise UserError(f"{local} processes per node need {local} GPUs, {torch.cuda.device_count()} are visible: "
                        "use --nproc-per-node <visible GPUs> (or device=cpu).")


def prepare(cfg: DictConfig, out_dir: Path) -> Plan:
    settings.check(cfg)
    check_writable(Path(cfg.paths.cache_dir), "paths.cache_dir (or D2LORA_CACHE)")
    dist_check(cfg)
    wandb_mode = dist.on_main(tracking.decide_mode, cfg.wandb)  # the main rank's W&B runs are the job's
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.model.dtype, device)
    method = get_method(cfg.method.name)
    method.validate(cfg.method)
    inits.validate(cfg.init, cfg.method)
    requested = check_data_size(cfg.data_size)
    task = get_task(cfg.task)
    # Built by the main rank while the others wait (under a launcher transformers writes a model from rank 0 only).
    dist.on_main(data_build.ensure, cfg.data)
    model_source = dist.on_main(modeling.ensure_available, cfg.model, cfg.paths.cache_dir)
    model_config = modeling.load_config(model_source, cfg.model)
    tokenizer = modeling.load_tokenizer(model_source, cfg.model)
    modeling.check_target_modules(model_config, model_source,
                                  OmegaConf.to_container(cfg.lora, resolve=True)["target_modules"])
    train_rows, subset_hash, pool_size, n = _train_rows(method, task, cfg, requested, tokenizer)
    args = training.trainer_args(cfg, adapt_checkpoints(out_dir), cfg.method, device, dtype, "method")
    adapt_config = method.make_config(args, cfg.method)
    train_rows, overlong_rows = training.fit_rows(train_rows, tokenizer, int(args["max_length"]), cfg.train.overlong,
                                                  f"{task.name} training")
    if cfg.train.group_by_length and method.DATASET_KIND == "preference":
        train_rows = training.with_lengths(train_rows, tokenizer)
    warmup_plan = warmup.plan(cfg, tokenizer, model_source, out_dir, device, dtype) if cfg.init.warmup else None
    base = cfg.init.get("base", "default")
    return Plan(cfg=cfg, out_dir=out_dir, device=device, dtype=dtype, init_base=base,
                init_label=init_label(base, bool(cfg.init.warmup)), method=method, task=task, model_source=model_source,
                tokenizer=tokenizer, pool_size=pool_size, data_size=n, subset_hash=subset_hash, train_rows=train_rows,
                overlong_rows=overlong_rows, adapt_config=adapt_config, warmup=warmup_plan,
                calibration_texts=_calibration_texts(cfg, tokenizer), evaluators=evaluation.prepare(cfg, task),
                wandb_mode=wandb_mode)


def calibration_batches(plan: Plan) -> list[dict] | None:
    if plan.calibration_texts is None:
        return None
    cfg = plan.cfg
    return inits.calibration_batches(plan.tokenizer, plan.calibration_texts, int(cfg.calibration.batch_size),
                                     int(cfg.train.max_length), plan.device)
