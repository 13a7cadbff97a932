"""Hydra callback: progress while a sweep runs, and the report + W&B summary run when it ends.

Registered in conf/hydra/default.yaml, so every sweep (local, joblib or SLURM launcher) ends with
`results.csv`, `report.md`, PNG curves and one summary run, whichever jobs failed. Progress (runs
done / to do, time left) is counted in `<sweep dir>/.progress.json` under a file lock, so it is right
whichever process a job ends in (the basic launcher's, a joblib worker, a SLURM job on a shared disk).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def sweep_size(config: DictConfig) -> int:
    """Number of jobs: the product of every swept value list (command line replaces the sweep file)."""
    params = {k: f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()}
    for override in config.hydra.overrides.task:
        params[override.split("=", 1)[0].lstrip("+~")] = override
    total = 1
    for override in OverridesParser.create().parse_overrides(list(params.values())):
        if override.is_sweep_override():
            total *= len(list(override.sweep_string_iterator()))
    return total


PROGRESS = ".progress.json"


class SweepReport(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        total = sweep_size(config)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        state = {"total": total, "done": 0, "skipped": 0, "worked_seconds": 0.0, "started": time.time()}
        with FileLock(str(sweep_dir / PROGRESS) + ".lock"):
            (sweep_dir / PROGRESS).write_text(json.dumps(state))
        log.info("sweep %s: %d runs -> %s", config.sweep_name, total, sweep_dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._job_started = (time.perf_counter(), time.time())

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not (sweep_dir / PROGRESS).is_file():
            return
        metrics = Path(config.hydra.runtime.output_dir) / "metrics.json"
        started, started_wall = getattr(self, "_job_started", (time.perf_counter(), time.time()))
        took = time.perf_counter() - started
        with FileLock(str(sweep_dir / PROGRESS) + ".lock"):
            state = json.loads((sweep_dir / PROGRESS).read_text())
            state["done"] += 1
            # A resumed run's result was written before this job started (by an earlier sweep).
            if metrics.is_file() and metrics.stat().st_mtime < started_wall:
                state["skipped"] += 1
            else:
                state["worked_seconds"] += took
            (sweep_dir / PROGRESS).write_text(json.dumps(state))
        done, total, skipped = state["done"], state["total"], state["skipped"]
        worked = done - skipped
        # Time per job actually computed, divided by how many ran at once (summed job time / wall time).
        elapsed = time.time() - state["started"]
        per_job = state["worked_seconds"] / worked if worked else math.nan
        left = (total - done) * per_job / max(1.0, state["worked_seconds"] / max(elapsed, 1e-9))
        log.info("sweep %s: %d/%d runs done (%d already complete), elapsed %.0fs, about %s left",
                 config.sweep_name, done, total, skipped, elapsed, "?" if math.isnan(left) else f"{left / 60:.1f} min")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from . import report, tracking

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        written = report.write(sweep_dir)
        run_id = tracking.log_sweep_summary(config.wandb, sweep_dir, str(config.sweep_name), written)
        log.info("sweep %s: %d results -> %s (W&B summary run: %s)", config.sweep_name, len(written["rows"]),
                 sweep_dir / "report.md", run_id or "off")
