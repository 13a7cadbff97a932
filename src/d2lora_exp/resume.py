"""Resuming sweeps: a run whose directory already holds a complete result of the same config is skipped.

Sweep runs live at fixed paths (sweep name / run name), so re-running a killed sweep reaches the same
directories: finished runs are kept as they are, runs that died are moved aside and run again, and a
directory holding a result of a *different* config is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .errors import UserError

# Where results land and how they are logged does not change what a run computes; nor does the miniature
# preset's per-method table (`miniature.lr/args`): it only feeds `method`, whose resolved values are hashed.
NOT_PART_OF_THE_RESULT = ("paths", "wandb", "sweep_name", "hydra", "gpu_slots", "miniature")
KEEP = {".hydra", "d2lora_exp.log"}  # written by Hydra for this attempt before the run starts


def config_hash(cfg: DictConfig) -> str:
    data = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_PART_OF_THE_RESULT:
        data.pop(key, None)
    if data.get("data_size") == 0:
        data.pop("method", None)  # nothing is adapted: every method's n=0 run is the same run
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
    for item in out_dir.iterdir():
        if item.name not in KEEP and not item.name.startswith(".attempt-"):
            shutil.move(str(item), attempt / item.name)
    return None
