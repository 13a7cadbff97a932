"""Hydra callback: when a multirun ends, write the local report and the W&B summary run.

Registered in conf/hydra/default.yaml, so every sweep (local, joblib or SLURM launcher) ends with
`results.csv`, `report.md`, PNG curves and one summary run, whichever jobs failed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from . import report, tracking

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        written = report.write(sweep_dir)
        run_id = tracking.log_sweep_summary(config.wandb, sweep_dir, str(config.sweep_name), written)
        log.info("sweep %s: %d results -> %s (W&B summary run: %s)", config.sweep_name, len(written["rows"]),
                 sweep_dir / "report.md", run_id or "off")
