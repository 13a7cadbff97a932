"""Hydra callback: progress while a sweep runs, and the report + W&B summary run when it ends.

Registered in conf/hydra/default.yaml, so every sweep (local, joblib or SLURM launcher) ends with
`results.csv`, `report.md`, PNG curves and one summary run, whichever jobs failed. Progress (runs
done / to do, time left) is printed by the launching process; with parallel launchers the jobs end
in worker processes, so only the final report appears there.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

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


class SweepReport(Callback):
    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.skipped = 0
        self.started = time.perf_counter()
        self.worked_seconds = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.total, self.started = sweep_size(config), time.perf_counter()
        log.info("sweep %s: %d runs -> %s", config.sweep_name, self.total, config.hydra.sweep.dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._job_started = (time.perf_counter(), time.time())

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not self.total:
            return
        self.done += 1
        metrics = Path(config.hydra.runtime.output_dir) / "metrics.json"
        started, started_wall = getattr(self, "_job_started", (time.perf_counter(), time.time()))
        took = time.perf_counter() - started
        # A resumed run's result was written by an earlier sweep, before this job started.
        if metrics.is_file() and metrics.stat().st_mtime < started_wall:
            self.skipped += 1
        else:
            self.worked_seconds += took
        worked = self.done - self.skipped
        left = (self.total - self.done) * (self.worked_seconds / worked) if worked else math.nan
        log.info("sweep %s: %d/%d runs done (%d already complete), elapsed %.0fs, about %s left",
                 config.sweep_name, self.done, self.total, self.skipped, time.perf_counter() - self.started,
                 "?" if math.isnan(left) else f"{left / 60:.1f} min")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from . import report, tracking

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        written = report.write(sweep_dir)
        run_id = tracking.log_sweep_summary(config.wandb, sweep_dir, str(config.sweep_name), written)
        log.info("sweep %s: %d results -> %s (W&B summary run: %s)", config.sweep_name, len(written["rows"]),
                 sweep_dir / "report.md", run_id or "off")
