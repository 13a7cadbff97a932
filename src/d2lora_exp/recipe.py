"""One experiment of the paper, top to bottom: prepare, (warm up), adapt, evaluate, record.

Read it like the paper's Section 2. Every input that can be wrong is checked in `prepare`, before the
model is loaded, so a bad run fails in seconds with one line; results are written after every phase
(metrics.json carries a status), so a crash late in a run keeps what was already computed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from . import dist, fsdp, interrupt, modeling, provenance, tracking
from .errors import UserError
from .files import check_writable
from .phases import adapt, evaluate, record, wandb_run, warmup
from .phases.prepare import prepare

log = logging.getLogger(__name__)


def run(cfg: DictConfig, hydra_files: Path | None = None) -> dict[str, Any]:
    """`hydra_files`: where Hydra wrote this attempt's config; it becomes the run's `.hydra/` if this attempt runs.

    Under a launcher every rank runs this; the main rank owns the directory and decides for all (dist.py)."""
    out_dir = Path(cfg.paths.output_dir)
    dist.on_main(_make_dir, out_dir)
    # One live process per run directory: another one waits here (under a launcher, the main rank holds the lock).
    with record.owned(out_dir) if dist.is_main() else contextlib.nullcontext():
        return _run(cfg, out_dir, hydra_files)


def _make_dir(out_dir: Path) -> None:
    check_writable(out_dir, "paths.output_dir (hydra.run.dir, hydra.sweep.dir)")
    out_dir.mkdir(parents=True, exist_ok=True)


def _take_over(out_dir: Path, digest: str, hydra_files: Path | None,
               sharded: bool) -> tuple[record.Carried, dict[str, Any] | None]:
    """(what an unfinished attempt leaves, the finished result to reuse or None); this attempt's Hydra files become
    the run's if it runs. The main rank's files and decision."""
    carried = record.carried_over(out_dir, digest, sharded)
    done = record.previous_result(out_dir, digest, carried)
    if done is None:
        record.install_hydra_files(hydra_files, out_dir)
    return carried, done


def _run(cfg: DictConfig, out_dir: Path, hydra_files: Path | None) -> dict[str, Any]:
    digest = record.config_hash(cfg)
    carried, done = dist.on_main(_take_over, out_dir, digest, hydra_files, fsdp.enabled(cfg))
    if done is not None:
        log.info("%s: already complete in %s, skipped", cfg.run_name, out_dir)
        return {**done, "skipped": True}

    rec = record.Record(cfg, out_dir, digest)
    try:
        with interrupt.guard():
            return _phases(cfg, rec, carried, digest)
    except interrupt.Interrupted as err:
        rec.interrupted(err)
        raise
    except BaseException as err:
        signum = interrupt.requested()
        if signum is None or isinstance(err, UserError):
            rec.fail(err)
            raise
        # After a stop signal, an error is most likely its consequence (SLURM signals every process of the job:
        # a data-loader worker, W&B's service): the run is interrupted, to be resumed, not failed.
        stopped = interrupt.Interrupted(signum, f"then {record.error_line(err)}")
        rec.interrupted(stopped)
        raise stopped from err
    finally:
        rec.close()


def _phases(cfg: DictConfig, rec: record.Record, carried: record.Carried, digest: str) -> dict[str, Any]:
    """Prepare, (warm up), adapt, evaluate: each phase's result is recorded in metrics.json as soon as it exists."""
    start = time.perf_counter()
    with rec.timing("checks"):
        plan = prepare(cfg, rec.out_dir)
        rec.update(**plan.summary())
        rec.add_provenance(**provenance.of_plan(plan))
    with rec.timing("load_model"):
        model = modeling.load_model(plan.model_source, cfg.model, plan.device, plan.dtype)

    warmup_dir = warmup_summary = None
    if plan.warmup is not None:
        with rec.timing("warmup") as usage:
            model, warmup_dir, warmup_summary = warmup.run(plan, model)
            rec.update(warmup=warmup_summary)
            usage.update(tokens=warmup_summary["tokens"], total_flos=warmup_summary["total_flos"])
    dist.check_interrupt("after the warm-up")

    rec.open_wandb(wandb_run.open_run(plan, warmup_summary, carried.wandb_id, rec.provenance),
                   resumed=carried.wandb_id is not None)
    with rec.measured("adapt") as usage:
        model, adapted = adapt.run(plan, model, warmup_dir, rec.wandb_run, carried)
    if adapted is not None:  # data_size=0 trains nothing: no tokens to record
        usage.update(tokens=adapted.get("tokens"), total_flos=adapted.get("total_flos"))
        rec.timings.update(init=adapted.pop("init_seconds"), adapt=adapted.pop("seconds"))  # training alone
        adapted["wandb_artifact"] = wandb_run.log_adapted(plan, rec.wandb_run, adapted, digest)
        rec.update(adapt=adapted, timings=rec.timings)
    dist.check_interrupt("after the adaptation")

    with rec.timing("eval"):
        adapter_dir = Path(adapted["adapter"]) if adapted is not None else warmup_dir  # what vLLM loads
        # Under a launcher every rank evaluates its share of the rows; the main rank scores and writes.
        metrics, evaluated = evaluate.run(plan, model, adapter_dir)
        rec.update(evaluation=evaluated)
        tracking.log_predictions(rec.wandb_run, [e.predictions_path(rec.out_dir) for e in plan.evaluators])
    rec.timings["total"] = round(time.perf_counter() - start, 2)
    return rec.complete(metrics, cfg.task.eval.metric)
