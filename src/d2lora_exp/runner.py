"""One experiment of the paper, top to bottom: check inputs, (warm-up), adaptation, evaluation, results.

Every input that can be wrong (device, model access, data files and columns, data_size, method x
task) is checked before the model is loaded, so a bad run fails in seconds with one message.
Results are written as they are produced (metrics.json carries a status), so a crash late in a run
keeps what was already computed (the warm-up adapter, the trained adapter, the timings).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from . import adapters, chat_eval, forgetting, inits, modeling, resume, tracking, warmup, warmup_cache
from .data import build as data_build
from .data import sources, subsets
from .config import init_label, method_label
from .device import resolve_device, resolve_dtype
from .errors import UserError
from .methods import get_method
from .tasks import get_task
from .tasks.base import limited

log = logging.getLogger(__name__)


class Results:
    """metrics.json, rewritten after every phase so partial runs stay readable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"status": "running"}

    def update(self, **values: Any) -> None:
        self.data.update(values)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.path)


def _training_args(cfg: DictConfig, out_dir: Path, phase: dict[str, Any], device: str, dtype: torch.dtype) -> dict[str, Any]:
    """Shared `train` settings, then the phase's own hyper-parameters, then its pass-through `args`."""
    args = OmegaConf.to_container(cfg.train, resolve=True)
    args.update(
        output_dir=str(out_dir), seed=int(cfg.seed), report_to="none", save_strategy="no",
        logging_first_step=True, use_cpu=device == "cpu", bf16=dtype == torch.bfloat16, disable_tqdm=False,
        learning_rate=float(phase["learning_rate"]), num_train_epochs=float(phase["num_train_epochs"]),
    )
    args.update(OmegaConf.to_container(phase.get("args") or OmegaConf.create({}), resolve=True))
    return args


def _check_prompt_lengths(rows, tokenizer, max_length: int, what: str) -> None:
    """A prompt that fills max_length leaves an empty completion: TRL then drops it silently (SFT) or
    trains on NaN log-probs (ORPO). Refuse instead, naming the length that would fit."""
    lengths = [len(ids) for ids in tokenizer(list(rows["prompt"]), add_special_tokens=False)["input_ids"]]
    too_long = [n for n in lengths if n >= max_length]
    if too_long:
        raise UserError(
            f"{len(too_long)} of {len(lengths)} {what} rows have prompts of >= train.max_length={max_length} tokens "
            f"(longest {max(lengths)}), leaving no room for the answer. Raise train.max_length above {max(lengths)} "
            "(or its per-phase override in method.args / warmup.args)."
        )


def _train(trainer, callback: tracking.PhaseLogger) -> dict[str, Any]:
    start = time.perf_counter()
    output = trainer.train()
    losses = [h["loss"] for h in callback.history if "loss" in h]
    return {"train_loss": float(output.training_loss), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "steps": int(output.global_step),
            "seconds": round(time.perf_counter() - start, 2), "log_history": callback.history}


def run(cfg: DictConfig) -> dict[str, Any]:
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = resume.config_hash(cfg)
    done = resume.previous_result(out_dir, digest)
    if done is not None:
        log.info("%s: already complete in %s, skipped", cfg.run_name, out_dir)
        return {**done, "skipped": True}
    results = Results(out_dir / "metrics.json")
    results.update(config_hash=digest, run_name=cfg.run_name, pid=os.getpid(),
                   cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
                   config=tracking.scrub(OmegaConf.to_container(cfg, resolve=True)))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    # 1. Everything that can be wrong, before any work.
    n = cfg.data_size
    if not isinstance(n, int) or isinstance(n, bool):
        raise UserError(f"data_size={n!r} is not an integer; use an integer >= 0.")
    if n < 0:
        raise UserError(f"data_size={n} is negative; use an integer >= 0 (0 evaluates the initialisation).")
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.model.dtype, device)
    dtype_name = str(dtype).removeprefix("torch.")
    method = get_method(cfg.method.name)
    method.validate(cfg.method)
    inits.validate(cfg.init, cfg.method)
    base_init = cfg.init.get("base", "default")
    label = init_label(base_init, bool(cfg.init.warmup))
    task = get_task(cfg.task)
    warmup_cfg = cfg.warmup if cfg.init.warmup else None
    data_build.ensure(cfg.data)
    model_source = modeling.ensure_available(cfg.model)
    tokenizer = modeling.load_tokenizer(model_source, cfg.model)

    pool = task.train_pool()
    sources.require_size(n, pool, f"{task.name} training pool")
    subset, subset_hash = subsets.nested_subset(pool, n, int(cfg.task.train.subset_seed))
    train_rows = None
    if n > 0:
        train_rows = task.preference_rows(subset, tokenizer) if method.DATASET_KIND == "preference" else task.sft_rows(subset, tokenizer)
    warmup_rows = warmup.sft_rows(warmup.load_pool(warmup_cfg), tokenizer) if warmup_cfg else None
    calibration_texts = None
    if base_init in inits.NEEDS_CALIBRATION:  # eva/corda: activations of the first warm-up rows by default
        calib_pool = warmup.load_pool(OmegaConf.merge(cfg.warmup, {"data": cfg.calibration.data, "size": None}))
        calib = warmup.sft_rows(calib_pool.select(range(min(int(cfg.calibration.rows), len(calib_pool)))), tokenizer)
        calibration_texts = [p + c for p, c in zip(calib["prompt"], calib["completion"])]
    sft = get_method("sft")
    adapt_config = method.make_config(_training_args(cfg, out_dir / "trainer_adapt", cfg.method, device, dtype), cfg.method)
    warmup_config = sft.make_config(_training_args(cfg, out_dir / "trainer_warmup", warmup_cfg, device, dtype), cfg.method) if warmup_cfg else None
    if train_rows is not None:
        _check_prompt_lengths(train_rows, tokenizer, adapt_config.max_length, f"{task.name} training")
    if warmup_rows is not None:
        _check_prompt_lengths(warmup_rows, tokenizer, warmup_config.max_length, "warm-up")
    arc_set = chat_set = None
    if cfg.eval.enabled:
        task.eval_set()
        if cfg.eval.forgetting:
            arc_set = sources.load(cfg.eval.forgetting_data, "ARC-Easy (forgetting)")
            sources.require_columns(arc_set, forgetting.ARC_COLUMNS, "ARC-Easy (forgetting)")
            arc_set = limited(arc_set, cfg.eval.limit)
            for row in arc_set:
                forgetting.gold_index(row)
        if cfg.eval.get("chat"):
            if cfg.eval.get("chat_data") is None:
                raise UserError("eval.chat=true needs held-out chat prompts: set eval.chat_data={path: ...} to a file "
                                "in the orpo-dpo-mix schema (the miniature world, data=miniature, ships one).")
            chat_set = chat_eval.load(cfg.eval.chat_data, cfg.eval.limit)
    method_name = method_label(cfg.method.name, n)
    results.update(init=label, init_base=base_init, method=method_name, task=task.name, data_size=n, seed=int(cfg.seed),
                   model=cfg.model.name, device=device, dtype=dtype_name,
                   subset_hash=subset_hash, pool_size=len(pool), warmup_rows=len(warmup_rows) if warmup_rows else 0,
                   dpo_reference=cfg.method.get("reference") if method_name == "dpo" else None,
                   variant=cfg.get("variant"), torch_threads=torch.get_num_threads())
    timings["checks"] = round(time.perf_counter() - t0, 2)

    run = None
    try:
        # 2. Base model.
        t = time.perf_counter()
        model = modeling.load_model(model_source, cfg.model, device, dtype)
        timings["load_model"] = round(time.perf_counter() - t, 2)

        def calibration():
            if calibration_texts is None:
                return None
            return inits.calibration_batches(tokenizer, calibration_texts, int(cfg.calibration.batch_size),
                                             int(cfg.train.max_length), device)

        # 3. Warm-up (D2LoRA only): SFT of fresh adapters on general data, trained once and cached.
        warmup_dir: Path | None = None
        if warmup_rows is not None:
            material = warmup_cache.key_material(cfg, dtype_name)

            def build_warmup(target: Path) -> dict[str, Any]:
                nonlocal model
                key = warmup_cache.cache_key(material)
                log.info("warm-up %s: SFT of fresh LoRA on %d general rows", key, len(warmup_rows))
                wrun = tracking.start(cfg.wandb, out_dir, f"warmup-{key[:8]}-s{cfg.seed}", job_type="warmup",
                                      tags=[f"warmup:{key}", f"seed:{cfg.seed}"], config=material)
                try:
                    initial = target / "initial" if base_init in inits.REWRITES_BASE else None
                    model = inits.create(model, cfg.lora, base_init, int(cfg.seed), calibration(), initial)
                    callback = tracking.PhaseLogger("warmup", wrun)
                    trainer = sft.build_trainer(model, tokenizer, warmup_rows, warmup_config, cfg.method, [callback])
                    stats = _train(trainer, callback)
                    adapters.save(model, target, initial_dir=initial)
                    if initial is not None:
                        shutil.rmtree(initial)
                        # The base in memory is the residual W - BA: reload the original for what follows.
                        model = modeling.load_model(model_source, cfg.model, device, dtype)
                    else:
                        model = model.unload()  # back to the clean base; later phases load the saved adapter
                finally:
                    if wrun is not None:
                        wrun.finish()
                return {**stats, "rows": len(warmup_rows), "trained_by": str(out_dir),
                        "wandb_run": {"id": wrun.id, "name": wrun.name} if wrun is not None else None}

            t = time.perf_counter()
            warmup_dir, record, reused = warmup_cache.get_or_build(Path(cfg.paths.cache_dir) / "warmups", material, build_warmup)
            timings["warmup"] = round(time.perf_counter() - t, 2)
            results.update(warmup={**{k: record.get(k) for k in ("key", "train_loss", "first_loss", "last_loss", "steps",
                                                                  "rows", "trained_by", "wandb_run")},
                                   "reused": reused, "adapter": str(warmup_dir),
                                   "digest": adapters.file_digest(warmup_dir)}, timings=timings)

        run = tracking.start(cfg.wandb, out_dir, cfg.run_name, job_type="adapt" if n > 0 else "eval",
                             tags=[f"init:{label}", f"method:{method_name}", f"task:{task.name}",
                                   f"n:{n}", f"seed:{cfg.seed}"],
                             config={**OmegaConf.to_container(cfg, resolve=True), "warmup_used": results.data.get("warmup")})

        # 4. Adaptation on the first n rows of the task pool.
        if n > 0:
            initial = out_dir / "initial_adapter" if base_init in inits.REWRITES_BASE and not warmup_dir else None
            model = (adapters.load_trainable(model, warmup_dir) if warmup_dir
                     else inits.create(model, cfg.lora, base_init, int(cfg.seed), calibration(), initial))
            start = {"digest": adapters.live_digest(model), "lora_b_norm": adapters.lora_b_norm(model)}
            log.info("adaptation: %s on %d %s rows", cfg.method.name, n, task.name)
            callback = tracking.PhaseLogger("adapt", run)
            trainer = method.build_trainer(model, tokenizer, train_rows, adapt_config, cfg.method, [callback])
            stats = _train(trainer, callback)
            model = trainer.model
            adapter_dir = adapters.save(model, out_dir / "adapter", initial_dir=initial)
            timings["adapt"] = stats.pop("seconds")
            results.update(adapt={**stats, "start": start, "adapter": str(adapter_dir),
                                  "digest": adapters.file_digest(adapter_dir),
                                  "lora_b_norm": adapters.lora_b_norm(model)}, timings=timings)

        elif warmup_dir is not None:
            model = adapters.load_frozen(model, warmup_dir)  # data_size=0: evaluate the warm-up itself

        # 5. Evaluation on the held-out set.
        metrics: dict[str, float] = {}
        if cfg.eval.enabled:
            t = time.perf_counter()
            metrics = task.evaluate(model, tokenizer, cfg.eval, out_dir)
            if arc_set is not None:
                metrics.update(forgetting.evaluate_arc(model, tokenizer, arc_set, cfg.eval.batch_size,
                                                       out_dir / "predictions_arc_easy.jsonl"))
            if chat_set is not None:
                metrics.update(chat_eval.evaluate(model, tokenizer, chat_set, cfg.eval.batch_size,
                                                  cfg.eval.max_new_tokens, out_dir / "predictions_chat.jsonl"))
            timings["eval"] = round(time.perf_counter() - t, 2)
        timings["total"] = round(time.perf_counter() - t0, 2)
        results.update(metrics=metrics, metric=cfg.task.eval.metric, score=metrics.get(cfg.task.eval.metric),
                       timings=timings, status="complete")
        if run is not None:
            run.summary.update({"data_size": n, "init": label, "method": method_name, "task": task.name,
                                "seed": int(cfg.seed), **{f"eval/{k}": v for k, v in metrics.items()},
                                **{f"time/{k}": v for k, v in timings.items()}})
        return results.data
    except BaseException as err:
        results.update(status="failed", error=f"{err.__class__.__name__}: {err}", timings=timings)
        raise
    finally:
        if run is not None:
            run.finish(exit_code=0 if results.data.get("status") == "complete" else 1)
