"""The adaptation's W&B run and the lineage it records: the warm-up artifact it starts from, the adapter it makes.

The warm-up logs to its own W&B run, once per cache entry (phases/warmup.py); every adaptation run *uses* that
run's artifact, so W&B's lineage graph leads from one warm-up to all the runs that started from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from .. import tracking
from . import warmup
from .prepare import Plan


def open_run(plan: Plan, warmup_summary: dict | None, resume_id: str | None, made_by: dict[str, Any]):
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


def log_adapted(plan: Plan, run, adapted: dict[str, Any], config_hash: str) -> dict[str, str] | None:
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
