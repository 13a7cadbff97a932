"""Weights & Biases: one run per experiment, offline unless an API key is configured and the server answers.

`wandb.init` is called by us (not by the HF Trainer, whose integration is switched off) so that
group, job type, tags and the resolved config are set, both phases log under their own prefix
(warmup/*, adapt/*), and the run is always finished, so multirun jobs never merge.
"""

from __future__ import annotations

import inspect
import logging
import netrc
import os
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from transformers import TrainerCallback

from . import dist, interrupt
from .errors import UserError

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.wandb.ai"
MODES = ("online", "offline", "disabled")

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
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).hostname  # `wandb login --host` too
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):  # no ~/.netrc, unreadable, or not netrc syntax: no key there
        return False


def base_url() -> str:
    """The W&B server a run would talk to, without any user:password part (it is logged)."""
    parts = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def reachable(url: str, timeout_s: float) -> bool:
    """Whether the server answers an HTTP HEAD (any status) within `timeout_s` seconds, name lookup included (a
    thread bounds it: urllib's own timeout leaves DNS out). The proxy settings of the environment apply, as they do
    for wandb itself."""
    answered = threading.Event()

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s).close()
            answered.set()
        except urllib.error.HTTPError:  # 401, 404...: it answered
            answered.set()
        except (OSError, ValueError):
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return answered.is_set()


def decide_mode(wandb_cfg: Any) -> str:
    """The mode of every W&B run of this job, decided once, in the prepare phase, before any work.

    auto: WANDB_MODE if the environment sets it, else online with an API key, else offline. Online (asked for, or
    chosen by auto) first probes the server: without network wandb retries for minutes after the model has loaded,
    then kills the run. So auto falls back to offline, saying so, and an explicit online is refused in one line."""
    mode = wandb_cfg.mode
    if not wandb_cfg.enabled:
        return "disabled"
    explicit = mode != "auto" or bool(os.environ.get("WANDB_MODE"))
    if mode == "auto":
        mode = os.environ.get("WANDB_MODE") or ("online" if has_api_key() else "offline")
        if mode not in MODES:
            raise UserError(f"WANDB_MODE={mode!r} is not a W&B mode: use one of {', '.join(MODES)}, or unset it.")
    if mode != "online":
        return mode
    url, timeout_s = base_url(), float(wandb_cfg.probe_timeout_s)
    if reachable(url, timeout_s):
        return "online"
    if explicit:
        origin = "wandb.mode=online" if wandb_cfg.mode == "online" else "WANDB_MODE=online"
        raise UserError(f"W&B server {url} unreachable within {timeout_s:g}s ({origin}): use wandb.mode=offline "
                        "(sync later with `wandb sync`) or auto" + (", and unset WANDB_MODE." if origin.startswith(
                            "WANDB") else "."))
    log.warning("W&B server %s unreachable within %gs: this run logs offline (sync later with `wandb sync`)",
                url, timeout_s)
    return "offline"


def start(wandb_cfg: Any, mode: str, run_dir: Path, name: str, job_type: str, tags: list[str], config: dict,
          run_id: str | None = None):
    """A W&B run in `mode` (decide_mode's answer for this job), or None when disabled; `run_id` continues the
    run of an interrupted attempt (resumed from its checkpoint). Under a launcher, the main rank's alone: one W&B run
    per job, not per rank (the other ranks get None, as with W&B off)."""
    if mode == "disabled" or not dist.is_main():
        return None
    import wandb

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    settings = dict(project=wandb_cfg.project, entity=wandb_cfg.entity, dir=str(run_dir), mode=mode,
                    group=wandb_cfg.group, job_type=job_type, name=name, tags=tags + list(wandb_cfg.tags or []),
                    config=flatten(scrub(config)), reinit="finish_previous", id=run_id,
                    resume="allow" if run_id else None)
    return wandb.init(**settings)


class PhaseLogger(TrainerCallback):
    """Logs trainer metrics as `<phase>/<name>` with its own step axis (the history is the Trainer's state)."""

    def __init__(self, phase: str, run) -> None:
        self.phase = phase
        self.run = run
        if run is not None:
            after_stop("define_metric", run.define_metric, f"{phase}/*", step_metric=f"{phase}/step")

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        if self.run is not None:
            after_stop("log", self.run.log,
                       {f"{self.phase}/{k}": v for k, v in logs.items()} | {f"{self.phase}/step": state.global_step})


def log_predictions(run, paths: list[Path]) -> None:
    """Each evaluator's per-example predictions as a W&B table (`predictions/<evaluator>`), so a surprising score
    can be read on the dashboard next to the run that made it. Lists and dicts (ARC's choices) become JSON text."""
    if run is None:
        return
    import json

    import wandb

    for path in (Path(p) for p in paths if Path(p).is_file()):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not rows:
            continue
        columns = list(rows[0])
        data = [[v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v) for v in
                 (row.get(c) for c in columns)] for row in rows]
        name = path.stem.removeprefix("predictions_")
        after_stop("log", run.log, {f"predictions/{name}": wandb.Table(columns=columns, data=data)})


ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")  # what loads the adapter (PEFT's README is not)


def artifact_name(text: str) -> str:
    """A W&B artifact name: letters, digits, `-`, `_` and `.` only (`d2lora+pissa` becomes `d2lora_pissa`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:128]


def _adapter_artifact(name: str, adapter_dir: Path, metadata: dict[str, Any], staged: bool):
    """The adapter's files as a W&B model artifact. Its digest depends on the files alone, so the same adapter built
    into an artifact by two runs has one digest, which is how W&B finds the version a later run uses.

    `staged`: copy the files into W&B's staging area (`WANDB_DATA_DIR`) until they are uploaded, for files that do not
    stay where they are (the warm-up is logged from its temporary build directory); otherwise (the run's `adapter/`,
    a finished cache entry) W&B reads them in place, also at `wandb sync`: no copy of every adapter per run."""
    import wandb

    artifact = wandb.Artifact(name, type="model", metadata=scrub(metadata))
    for file in ADAPTER_FILES:
        artifact.add_file(str((Path(adapter_dir) / file).resolve()), name=file,
                          policy="mutable" if staged else "immutable")
    return artifact


def log_adapter(run, name: str, adapter_dir: Path, metadata: dict[str, Any], staged: bool = False,
                aliases: list[str] | None = None) -> dict[str, str] | None:
    """Log an adapter as the run's output artifact; online it uploads now, offline `wandb sync` uploads it (the
    record in the run's .wandb file names the files). Returns what results record about it (None with W&B off)."""
    if run is None:
        return None
    artifact = _adapter_artifact(name, adapter_dir, metadata, staged)
    after_stop("log_artifact", run.log_artifact, artifact, aliases=aliases)
    return {"name": name, "digest": artifact.digest}


def use_adapter(run, name: str, adapter_dir: Path, logged: dict[str, str] | None) -> None:
    """Record that the run starts from the adapter in `adapter_dir`, logged by another run as `logged` (its name and
    digest, None if that run logged none), so W&B's lineage links the two runs.

    W&B uses an artifact by the digest of its files: the run hands W&B the same files under the same name, and W&B
    resolves them to the version that holds them instead of making a new one. Online that is `use_artifact`. Offline,
    `use_artifact` refuses (it asks the server), so the same request is written into the run's file: the artifact
    record with `use_after_commit` that `use_artifact` sends online, which `wandb sync` turns into the use (wandb's
    own `use_artifact` for an unlogged artifact does exactly this)."""
    if run is None:
        return
    artifact = _adapter_artifact(name, adapter_dir, {}, staged=False)
    if logged is None:
        log.warning("W&B: %s was logged by no W&B run (built with W&B off, or before adapters were artifacts): this run "
                    "records its use, so after `wandb sync` the first run synced that uses it appears as its producer",
                    name)
    elif logged["digest"] != artifact.digest:
        log.warning("W&B: %s in %s has digest %s, not the %s its W&B run logged: W&B will record a new version",
                    name, adapter_dir, artifact.digest, logged["digest"])
    if not run.offline:
        after_stop("use_artifact", run.use_artifact, artifact)
    elif "use_after_commit" in inspect.signature(run._log_artifact).parameters:
        after_stop("use_artifact", run._log_artifact, artifact, use_after_commit=True)
    else:
        log.warning("W&B: this wandb version cannot record the use of %s offline; the run's config names it "
                    "(warmup_used), its lineage in W&B will not", name)


def log_sweep_summary(wandb_cfg: Any, sweep_dir: Path, sweep_name: str, written: dict[str, Any]) -> str | None:
    """One summary run per sweep: the results table and metric-vs-data_size charts, LoRA and D2LoRA as
    series per method (the paper's learning-curve figures), plus the local PNGs."""
    if not written["rows"]:
        return None
    run = start(wandb_cfg, decide_mode(wandb_cfg), sweep_dir, f"summary-{sweep_name}", job_type="summary", tags=["summary"], config={})
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
