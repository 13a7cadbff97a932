"""One experiment of the paper, top to bottom: prepare, (warm up), adapt, evaluate, record.

Read it like the paper's Section 2. Every input that can be wrong is checked in `prepare`, before the
model is loaded, so a bad run fails in seconds with one line; results are written after every phase
(metrics.json carries a status), so a crash late in a run keeps what was already computed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from . import interrupt, modeling, provenance, tracking
from .errors import UserError
from .files import check_writable
from .phases import adapt, evaluate, record, warmup
from .phases.prepare import Plan, prepare

log = logging.getLogger(__name__)


def _open_wandb(plan: Plan, warmup_summary: dict | None, resume_id: str | None, made_by: dict[str, Any]):
    """The run's own W&B run (the warm-up logs to its own, once per cache entry), which uses the warm-up's artifact:
    W&B's lineage then leads from the warm-up run to every run that started from it. `made_by`: the run's
    provenance (code, libraries, machine, model, data; the per-phase usage goes to the summary at the end)."""
    cfg = plan.cfg
    run = tracking.start(cfg.wandb, plan.wandb_mode, plan.out_dir, cfg.run_name, job_type="adapt",
                         tags=[f"init:{plan.init_label}", f"method:{cfg.method.name}", f"task:{plan.task.name}",
                               f"n:{cfg.data_size}", f"seed:{cfg.seed}"],
                         config={**OmegaConf.to_container(cfg, resolve=True), "warmup_used": warmup_summary,
                                 "trl_args": plan.trl_args()["adapt"],
                                 "provenance": {k: v for k, v in made_by.items() if k != "phases"}},
                         run_id=resume_id)
    if warmup_summary is not None:
        tracking.use_adapter(run, warmup.artifact_name(warmup_summary["key"]), Path(warmup_summary["adapter"]),
                             warmup_summary.get("wandb_artifact"))
    return run


def _log_adapted(plan: Plan, run, adapted: dict[str, Any], config_hash: str) -> dict[str, str] | None:
    """The run's adapted adapter as its output artifact `adapter-<run name>`, aliased by the config hash (a rerun of
    the same config whose adapter is identical resolves to the same version)."""
    cfg = plan.cfg
    metadata = {"run_name": cfg.run_name, "init": plan.init_label, "init_base": plan.init_base,
                "method": cfg.method.name, "task": plan.task.name, "data_size": plan.data_size,
                "data_size_requested": cfg.data_size, "seed": int(cfg.seed), "config_hash": config_hash,
                "sweep_name": cfg.sweep_name, "adapter_digest": adapted["digest"],
                "start_digest": (adapted.get("start") or {}).get("digest")}
    return tracking.log_adapter(run, tracking.artifact_name(f"adapter-{cfg.run_name}"), Path(adapted["adapter"]),
                                metadata, aliases=[f"config-{config_hash}"])


def run(cfg: DictConfig, hydra_files: Path | None = None) -> dict[str, Any]:
    """`hydra_files`: where Hydra wrote this attempt's config; it becomes the run's `.hydra/` if this attempt runs."""
    out_dir = Path(cfg.paths.output_dir)
    check_writable(out_dir, "paths.output_dir (hydra.run.dir, hydra.sweep.dir)")
    out_dir.mkdir(parents=True, exist_ok=True)
    with record.owned(out_dir):  # one live process per run directory: another one waits here
        return _run(cfg, out_dir, hydra_files)


def _run(cfg: DictConfig, out_dir: Path, hydra_files: Path | None) -> dict[str, Any]:
    digest = record.config_hash(cfg)
    carried = record.carried_over(out_dir, digest)
    done = record.previous_result(out_dir, digest, carried)
    if done is not None:
        log.info("%s: already complete in %s, skipped", cfg.run_name, out_dir)
        return {**done, "skipped": True}

    record.install_hydra_files(hydra_files, out_dir)
    rec = record.Record(cfg, out_dir, digest)
    start = time.perf_counter()
    try:
        with interrupt.guard():
            with rec.timing("checks"):
                plan = prepare(cfg, out_dir)
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
            interrupt.check("after the warm-up")

            rec.open_wandb(_open_wandb(plan, warmup_summary, carried.wandb_id, rec.provenance),
                           resumed=carried.wandb_id is not None)
            with rec.measured("adapt") as usage:
                model, adapted = adapt.run(plan, model, warmup_dir, rec.wandb_run, carried)
            if adapted is not None:  # data_size=0 trains nothing: no tokens to record
                usage.update(tokens=adapted.get("tokens"), total_flos=adapted.get("total_flos"))
                rec.timings.update(init=adapted.pop("init_seconds"), adapt=adapted.pop("seconds"))  # training alone
                adapted["wandb_artifact"] = _log_adapted(plan, rec.wandb_run, adapted, digest)
                rec.update(adapt=adapted, timings=rec.timings)
            interrupt.check("after the adaptation")

            with rec.timing("eval"):
                adapter_dir = Path(adapted["adapter"]) if adapted is not None else warmup_dir
                metrics, evaluated = evaluate.run(plan, model, adapter_dir)
                rec.update(evaluation=evaluated)
                tracking.log_predictions(rec.wandb_run, [e.predictions_path(out_dir) for e in plan.evaluators])
            rec.timings["total"] = round(time.perf_counter() - start, 2)
            return rec.complete(metrics, cfg.task.eval.metric)
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
