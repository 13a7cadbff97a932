"""Record: the run's metrics.json (rewritten after every phase, with a status) and its W&B summary.

Sweep runs live at fixed paths (sweep name / run name), so re-running a killed sweep reaches the same
directories: finished runs are kept as they are, runs that died are moved aside and run again, and a
directory holding a result of a *different* config is never overwritten. Partial results stay readable:
a crash late in a run keeps the warm-up, the trained adapter and the timings already written.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .. import tracking
from ..errors import UserError
from ..files import write_json_atomic
from ..fingerprint import stable_hash
from ..training import RECIPE_ONLY

# Where results land and how they are logged does not change what a run computes.
NOT_PART_OF_THE_RESULT = ("paths", "wandb", "sweep_name", "hydra", "gpu_slots")
KEEP = {".hydra", "d2lora_exp.log"}
CHECKPOINTS = "checkpoints"  # written by Hydra for this attempt before the run starts


def config_hash(cfg: DictConfig) -> str:
    data = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_PART_OF_THE_RESULT:
        data.pop(key, None)
    for key in RECIPE_ONLY:  # when checkpoints are saved changes no number: a resume may change it
        data.get("train", {}).pop(key, None)
    return stable_hash(data)


def previous_result(out_dir: Path, digest: str) -> dict[str, Any] | None:
    """The finished result to reuse, or None after clearing a dead attempt out of the way."""
    path = out_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        data = {}
    if data.get("status") == "complete":
        if data.get("config_hash") == digest:
            return data
        raise UserError(
            f"{out_dir} already holds a finished run of a different config (config_hash {data.get('config_hash')} "
            f"vs {digest}). Nothing was overwritten: give this sweep its own name (sweep_name=...) or remove that directory."
        )
    attempt = out_dir / f".attempt-{time.strftime('%Y%m%d-%H%M%S')}"
    attempt.mkdir()
    # The checkpoints of an interrupted attempt of this same config are where the next attempt resumes.
    keep = KEEP | ({CHECKPOINTS} if data.get("config_hash") == digest else set())
    for item in out_dir.iterdir():
        if item.name not in keep and not item.name.startswith(".attempt-"):
            shutil.move(str(item), attempt / item.name)
    return None


def resumed_wandb_id(out_dir: Path, digest: str) -> str | None:
    """The W&B run of an unfinished attempt of this config that left a checkpoint: the resumed run logs on
    into it (same id) instead of starting a second run for one result. Read before previous_result moves it."""
    from ..checkpointing import latest

    try:
        data = json.loads((out_dir / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("status") == "complete" or data.get("config_hash") != digest:
        return None
    if latest(out_dir / CHECKPOINTS / "adapt") is None:
        return None
    return (data.get("wandb_run") or {}).get("id")


class Record:
    """metrics.json of one run; `wandb_run` (set once the adaptation run is opened) gets the same summary."""

    def __init__(self, cfg: DictConfig, out_dir: Path, digest: str) -> None:
        self.path = out_dir / "metrics.json"
        self.wandb_run = None
        self.timings: dict[str, float] = {}
        self.data: dict[str, Any] = {"status": "running"}
        self.update(config_hash=digest, run_name=cfg.run_name, pid=os.getpid(),
                    cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
                    config=tracking.scrub(OmegaConf.to_container(cfg, resolve=True)))

    def update(self, **values: Any) -> None:
        self.data.update(values)
        write_json_atomic(self.path, self.data)

    @contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        """Record how long the block took as `timings.<phase>`, written at once."""
        started = time.perf_counter()
        yield
        self.timings[phase] = round(time.perf_counter() - started, 2)
        self.update(timings=self.timings)

    def complete(self, metrics: dict[str, float], metric: str) -> dict[str, Any]:
        self.update(metrics=metrics, metric=metric, score=metrics.get(metric), status="complete")
        if self.wandb_run is not None:
            d = self.data
            summary = {"data_size": d["data_size"], "init": d["init"], "method": d["method"], "task": d["task"],
                       "seed": d["seed"], **{f"eval/{k}": v for k, v in metrics.items()},
                       **{f"time/{k}": v for k, v in self.timings.items()}}
            tracking.after_stop("summary", self.wandb_run.summary.update, summary)
        return self.data

    def fail(self, err: BaseException) -> None:
        self.update(status="failed", error=f"{err.__class__.__name__}: {err}")

    def interrupted(self, err: BaseException) -> None:
        """Stopped by a signal after saving what it had: a rerun of the same config resumes it."""
        self.update(status="interrupted", error=str(err))
        if self.wandb_run is not None:
            tracking.after_stop("mark_preempting", self.wandb_run.mark_preempting)

    def open_wandb(self, run, resumed: bool) -> None:
        """`resumed`: the run continues an interrupted attempt's W&B run (W&B offline cannot tell by itself)."""
        self.wandb_run = run
        if run is not None:
            self.update(wandb_run={"id": run.id, "name": run.name, "resumed": resumed})

    def close(self) -> None:
        if self.wandb_run is not None:
            tracking.after_stop("finish", self.wandb_run.finish, exit_code=0 if self.data.get("status") == "complete" else 1)
