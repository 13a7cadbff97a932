"""Weights & Biases: one run per experiment, offline unless an API key is configured.

`wandb.init` is called by us (not by the HF Trainer, whose integration is switched off) so that
group, job type, tags and the resolved config are set, both phases log under their own prefix
(warmup/*, adapt/*), and the run is always finished, so multirun jobs never merge.
"""

from __future__ import annotations

import logging
import netrc
import os
import re
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from . import interrupt

log = logging.getLogger(__name__)

# Any key that contains a secret-looking word (hf_token, hfToken, WANDB_API_KEY, api-key, passwords, secrets)...
SECRET_KEY = re.compile(r"token|api[_\-]?key|passw(or)?d|secret", re.IGNORECASE)
# ...except the settings that only look like one and that a run must record.
NOT_SECRET = re.compile(r"(max_new_tokens|max_tokens|num_tokens|.*_token_id|(pad|eos|bos|unk|sep|cls|mask)_token|"
                        r"tokenizer.*|.*tokens_per_.*)", re.IGNORECASE)


def is_secret(key: str) -> bool:
    return bool(SECRET_KEY.search(key)) and not NOT_SECRET.fullmatch(key)


def scrub(obj: Any) -> Any:
    """Drop secret-looking keys from a (nested) config before it is logged or dumped."""
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items() if not is_secret(str(k))}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    return obj


def flatten(obj: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def after_stop(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """A W&B call that must not turn an interruption into a failure.

    On SLURM the stop signal (SIGTERM, the time-limit USR1/USR2) reaches every process of the job, W&B's service
    process included, which may be gone by the time the run saves its checkpoint and records `interrupted`. Once a
    stop signal has arrived, a failing W&B call is logged and skipped (the run's files keep what was logged);
    before that, it raises like any other error."""
    try:
        return call(*args, **kwargs)
    except Exception as err:
        if interrupt.requested() is None:
            raise
        log.warning("W&B %s failed after the stop signal (%s: %s); metrics.json and the checkpoint are unaffected",
                    what, err.__class__.__name__, err)
        return None


def has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    """auto: WANDB_MODE if the environment sets it, else online with an API key, else offline."""
    if mode == "auto":
        return os.environ.get("WANDB_MODE") or ("online" if has_api_key() else "offline")
    return mode


def start(wandb_cfg: Any, run_dir: Path, name: str, job_type: str, tags: list[str], config: dict,
          run_id: str | None = None):
    """A W&B run; `run_id` continues the run of an interrupted attempt (resumed from its checkpoint)."""
    if not wandb_cfg.enabled or resolve_mode(wandb_cfg.mode) == "disabled":
        return None
    import wandb

    return wandb.init(
        project=wandb_cfg.project, entity=wandb_cfg.entity, dir=str(run_dir), mode=resolve_mode(wandb_cfg.mode),
        group=wandb_cfg.group, job_type=job_type, name=name, tags=tags + list(wandb_cfg.tags or []),
        config=flatten(scrub(config)), reinit="finish_previous", id=run_id, resume="allow" if run_id else None,
    )


class PhaseLogger(TrainerCallback):
    """Logs trainer metrics as `<phase>/<name>` with its own step axis, and keeps the history."""

    def __init__(self, phase: str, run) -> None:
        self.phase = phase
        self.run = run
        self.history: list[dict[str, float]] = []
        if run is not None:
            run.define_metric(f"{phase}/*", step_metric=f"{phase}/step")

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        self.history.append({"step": state.global_step, **logs})
        if self.run is not None:
            after_stop("log", self.run.log,
                       {f"{self.phase}/{k}": v for k, v in logs.items()} | {f"{self.phase}/step": state.global_step})


def log_sweep_summary(wandb_cfg: Any, sweep_dir: Path, sweep_name: str, written: dict[str, Any]) -> str | None:
    """One summary run per sweep: the results table and metric-vs-data_size charts, LoRA and D2LoRA as
    series per method (the paper's learning-curve figures), plus the local PNGs."""
    if not written["rows"]:
        return None
    run = start(wandb_cfg, sweep_dir, f"summary-{sweep_name}", job_type="summary", tags=["summary"], config={})
    if run is None:
        return None
    import wandb

    try:
        columns = ["task", "method", "init", "data_size", "seed", "metric", "value"]
        run.log({"results": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in written["rows"]])})
        stats = written["stats"]
        for task, metric, method in sorted({(k[0], k[1], k[2]) for k in stats}):
            inits = sorted({k[3] for k in stats if k[:3] == (task, metric, method)}, key=lambda i: i != "lora")
            sizes = sorted({k[4] for k in stats if k[:3] == (task, metric, method)})
            xs, ys = [], []
            for init in inits:
                points = [s for s in sizes if (task, metric, method, init, s) in stats]
                xs.append(points)
                ys.append([stats[(task, metric, method, init, s)]["mean"] for s in points])
            run.log({f"curve/{task}/{metric}/{method}": wandb.plot.line_series(
                xs=xs, ys=ys, keys=inits, title=f"{task} {metric}: {method}", xname="data_size")})
        for path in written["plots"]:
            run.log({f"png/{Path(path).stem}": wandb.Image(str(path))})
        return run.id
    finally:
        run.finish()
