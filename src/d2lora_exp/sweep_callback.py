"""Hydra callback: progress while a sweep runs, and the report + W&B summary run when it ends.

Registered in conf/hydra/default.yaml, so every sweep (local, joblib or SLURM launcher) ends with
`results.csv`, `report.md`, PNG curves and one summary run, whichever jobs failed. Progress (runs
done / to do, time left) and the failed jobs are counted in `<sweep dir>/.progress.json` under a file lock,
so they are right whichever process a job ends in (the basic launcher's, a joblib worker, a SLURM job on a
shared disk). A failed job returns a `JobFailure` instead of raising (Hydra would stop before the report);
once the report is written, the sweep lists the failures and exits with code 1.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from . import dist
from .errors import UserError

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


@dataclass(frozen=True)
class JobFailure:
    """What a sweep job that failed returns to Hydra: which run, and its error line (as in its metrics.json)."""

    run_name: str
    run_dir: str
    error: str


def job_failure(job_return: JobReturn | None) -> JobFailure | None:
    if job_return is None or job_return.status != JobStatus.COMPLETED:
        return None
    value = job_return.return_value
    return value if isinstance(value, JobFailure) else None


class SweepReport(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not dist.is_main():  # under a launcher, the main rank counts and reports
            return
        total = sweep_size(config)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        state = {"total": total, "done": 0, "skipped": 0, "worked_seconds": 0.0, "started": time.time(), "failed": []}
        with FileLock(str(sweep_dir / PROGRESS) + ".lock"):
            (sweep_dir / PROGRESS).write_text(json.dumps(state))
        log.info("sweep %s: %d runs -> %s", config.sweep_name, total, sweep_dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._job_started = (time.perf_counter(), time.time())

    def on_job_end(self, config: DictConfig, job_return: JobReturn | None, **kwargs: Any) -> None:
        if not dist.is_main():  # under a launcher, the main rank counts and reports
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        if not (sweep_dir / PROGRESS).is_file():
            return
        metrics = Path(config.hydra.runtime.output_dir) / "metrics.json"
        started, started_wall = getattr(self, "_job_started", (time.perf_counter(), time.time()))
        took = time.perf_counter() - started
        failure = job_failure(job_return)
        with FileLock(str(sweep_dir / PROGRESS) + ".lock"):
            state = json.loads((sweep_dir / PROGRESS).read_text())
            state["done"] += 1
            if failure is not None:
                state["failed"].append(asdict(failure))
            # A resumed run's result was written before this job started (by an earlier sweep).
            elif metrics.is_file() and metrics.stat().st_mtime < started_wall:
                state["skipped"] += 1
            else:
                state["worked_seconds"] += took
            (sweep_dir / PROGRESS).write_text(json.dumps(state))
        done, total, skipped, failed = state["done"], state["total"], state["skipped"], len(state["failed"])
        worked = done - skipped
        # Time per job actually computed, divided by how many ran at once (summed job time / wall time).
        elapsed = time.time() - state["started"]
        per_job = state["worked_seconds"] / worked if worked else math.nan
        left = (total - done) * per_job / max(1.0, state["worked_seconds"] / max(elapsed, 1e-9))
        log.info("sweep %s: %d/%d runs done (%d already complete%s), elapsed %.0fs, about %s left",
                 config.sweep_name, done, total, skipped, f", {failed} failed" if failed else "", elapsed,
                 "?" if math.isnan(left) else f"{left / 60:.1f} min")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not dist.is_main():  # under a launcher, the main rank counts and reports
            return
        from . import report, tracking

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        progress = sweep_dir / PROGRESS
        with FileLock(str(progress) + ".lock"):
            state = json.loads(progress.read_text()) if progress.is_file() else {}
        failed = state.get("failed", [])
        written = report.write(sweep_dir, failed=failed)
        run_id = summary_error = None
        try:
            run_id = tracking.log_sweep_summary(config.wandb, sweep_dir, str(config.sweep_name), written)
        except UserError as err:  # e.g. wandb.mode=online and the server went away during the sweep
            summary_error = err
            log.error("sweep %s: no W&B summary run: %s", config.sweep_name, err)
        log.info("sweep %s: %d results -> %s (W&B summary run: %s)", config.sweep_name, len(written["rows"]),
                 sweep_dir / "report.md", run_id or "off")
        if failed:
            log.error("sweep %s: %d of %d runs failed (listed in %s):\n%s", config.sweep_name, len(failed),
                      state["total"], sweep_dir / "report.md",
                      "\n".join(f"  {f['run_name']}: {f['error']}" for f in failed))
            raise SystemExit(1)  # after the report: what finished is reported, and the sweep still reads as failed
        if summary_error is not None:
            raise SystemExit(1)
