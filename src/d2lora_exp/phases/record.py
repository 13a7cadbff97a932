"""Record: the run's metrics.json (rewritten after every phase, with a status) and its W&B summary.

Sweep runs live at fixed paths (sweep name / run name), so re-running a killed sweep reaches the same
directories: finished runs are kept as they are, runs that died are moved aside and run again, and a
directory holding a result of a *different* config is never overwritten. Partial results stay readable:
a crash late in a run keeps the warm-up, the trained adapter and the timings already written.

A run directory has one live owner at a time (`owned`: a lock held for the whole run, released by the OS when
its process dies), so two sweeps over the same runs, or a requeued SLURM job racing its stale twin, never both
write one directory: the second waits, then reuses the finished result or takes over from a dead one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from .. import cost, dist, provenance, resources, tracking
from ..checkpointing import Checkpoint, latest, layout_key
from ..errors import UserError
from ..files import write_json_atomic
from ..fingerprint import library_versions, stable_hash
from ..training import RECIPE_ONLY

log = logging.getLogger(__name__)

# Where results land and how they are logged does not change what a run computes.
# How the processes of a run share their work (`dist`: DDP, later FSDP) changes no number either; how many there are
# does (the global batch is per_device_train_batch_size x gradient_accumulation_steps x processes): `world_size`.
NOT_PART_OF_THE_RESULT = ("paths", "wandb", "sweep_name", "hydra", "gpu_slots", "dist")
LOCK = ".lock"
HYDRA = ".hydra"  # the Hydra files of the attempt that ran (installed by `install_hydra_files`)
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
# Never moved aside: the lock, the log every attempt appends to, and the Hydra files of live attempts (each
# process writes its own `.hydra-<host>-<pid>/` before it runs, see conf/hydra/default.yaml).
KEEP = {LOCK, "d2lora_exp.log"}
KEEP_PREFIXES = (".attempt-", f"{HYDRA}-")
_owned: set[Path] = set()  # run directories whose lock this process holds


def error_line(err: BaseException) -> str:
    """How a failure is recorded everywhere (metrics.json, the sweep's report and log): one line."""
    return f"{err.__class__.__name__}: {err}"


def config_hash(cfg: DictConfig) -> str:
    data = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_PART_OF_THE_RESULT:
        data.pop(key, None)
    for key in RECIPE_ONLY:  # when checkpoints are saved changes no number: a resume may change it
        data.get("train", {}).pop(key, None)
    if dist.world_size() > 1:  # only then, so that the hashes of one-process runs stay what they were
        data["world_size"] = dist.world_size()
    return stable_hash(data)


@contextmanager
def owned(out_dir: Path) -> Iterator[None]:
    """Hold `<out_dir>/.lock` for the block: the one live process allowed to read, move or write the run's files.

    Another process holding it is a live run of this directory (the OS drops the lock of a dead one), so this
    one waits for it to end, saying so, and then decides as if it had come later: reuse a finished result, or
    move a dead attempt aside and run."""
    out_dir = Path(out_dir).resolve()
    lock = FileLock(str(out_dir / LOCK))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        log.info("%s is owned by another live process (it holds %s); waiting for it to end, then reusing its "
                 "result if it finished, or taking over if it died", out_dir, LOCK)
        lock.acquire()
        log.info("%s: the other process ended; this one owns the directory now", out_dir)
    _owned.add(out_dir)
    try:
        yield
    finally:
        _owned.discard(out_dir)
        lock.release()


def previous_result(out_dir: Path, digest: str, carried: Carried | None = None) -> dict[str, Any] | None:
    """The finished result to reuse, or None after clearing a dead attempt out of the way.

    Reading needs no lock; moving files aside needs `owned(out_dir)`: without it the files may be a live run's."""
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
    # The checkpoints of an interrupted attempt of this same config are where the next attempt resumes, and its
    # adapter, if the adaptation had finished (`carried_over`), is used as it is.
    keep = KEEP | ({CHECKPOINTS} if data.get("config_hash") == digest else set())
    if carried is not None and carried.adapt is not None:
        keep |= {ADAPTER}
    _move_aside(out_dir, [item for item in out_dir.iterdir()
                          if item.name not in keep and not item.name.startswith(KEEP_PREFIXES)])
    return None


def checkpoint_key(digest: str, sharded: bool) -> str:
    """Whose adaptation checkpoints these are: the run's config and the library versions (a job requeued after an
    upgrade starts its phase again rather than resume the state another version wrote), in the layout of a sharded
    run or not (checkpointing.layout_key)."""
    return layout_key(stable_hash({"config": digest, "versions": library_versions()}), sharded)


@dataclass
class Carried:
    """What an unfinished attempt of the same config leaves to the next one."""

    wandb_id: str | None = None  # its W&B run, continued under the same id when there is something to resume
    adapt: dict[str, Any] | None = None  # its adaptation record, when `adapter/` is the finished, intact adapter
    checkpoint: Checkpoint | None = None  # the adaptation checkpoint to resume from (files verified once, here)


def carried_over(out_dir: Path, digest: str, sharded: bool) -> Carried:
    """Read before previous_result moves the attempt aside: a run stopped after its adaptation (e.g. a signal
    during evaluation) keeps its adapter, and one stopped inside a phase logs on into the same W&B run."""
    from ..adapters import file_digest

    try:
        data = json.loads((out_dir / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return Carried()
    if data.get("status") == "complete" or data.get("config_hash") != digest:
        return Carried()
    adapt, adapter = data.get("adapt"), out_dir / ADAPTER
    finished = adapt if adapt and adapter.is_dir() and file_digest(adapter) == adapt.get("digest") else None
    checkpoint = latest(out_dir / CHECKPOINTS / "adapt", checkpoint_key(digest, sharded))
    resumable = finished is not None or checkpoint is not None
    return Carried((data.get("wandb_run") or {}).get("id") if resumable else None, finished, checkpoint)


def _move_aside(out_dir: Path, items: list[Path]) -> None:
    """Move a dead attempt's files into `.attempt-<time>/`: never deleted, and never a live run's (see `owned`)."""
    if not items:
        return
    if Path(out_dir).resolve() not in _owned:
        raise RuntimeError(f"{out_dir} is not owned by this process (record.owned), so its files may be a live run's, "
                           "owned by another process: nothing was moved")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    attempt, n = out_dir / f".attempt-{stamp}", 1
    while attempt.exists():  # another dead attempt cleared in the same second
        attempt, n = out_dir / f".attempt-{stamp}-{n}", n + 1
    attempt.mkdir()
    for item in items:
        shutil.move(str(item), attempt / item.name)


def install_hydra_files(attempt: Path | None, out_dir: Path) -> None:
    """This attempt runs: the Hydra files it wrote (`attempt`, None outside Hydra) become the run's `.hydra/`.

    Called by the owner after `previous_result`; a job that skips or refuses the run never gets here, so the
    `.hydra/` of a finished run is the one that made it. A `.hydra/` still there belongs to an attempt that died
    before its metrics.json: it is moved aside like any dead attempt's files."""
    if attempt is None or not attempt.is_dir():
        return
    _move_aside(out_dir, [out_dir / HYDRA] if (out_dir / HYDRA).exists() else [])
    os.replace(attempt, out_dir / HYDRA)


class Record:
    """metrics.json of one run; `wandb_run` (set once the adaptation run is opened) gets the same summary."""

    def __init__(self, cfg: DictConfig, out_dir: Path, digest: str) -> None:
        self.out_dir = out_dir
        self.path = out_dir / "metrics.json"
        self.wandb_run = None
        self.timings: dict[str, float] = {}
        self.data: dict[str, Any] = {"status": "running"}
        self.provenance: dict[str, Any] = {**provenance.environment(), "model": None, "data": None, "phases": {}}
        self.update(config_hash=digest, run_name=cfg.run_name, pid=os.getpid(), world_size=dist.world_size(),
                    cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
                    config=tracking.scrub(OmegaConf.to_container(cfg, resolve=True)), provenance=self.provenance)

    def update(self, **values: Any) -> None:
        """Every rank keeps the record; the main rank alone writes it."""
        self.data.update(values)
        if dist.is_main():
            write_json_atomic(self.path, self.data)

    def add_provenance(self, **parts: Any) -> None:
        self.provenance.update(parts)
        self.update(provenance=self.provenance)

    @contextmanager
    def measured(self, phase: str) -> Iterator[dict[str, Any]]:
        """Record the block's peak memory as `provenance.phases.<phase>`, also when it fails; the caller may add
        to the dict it gets (the phase's tokens)."""
        usage = self.provenance["phases"].setdefault(phase, {})
        try:
            with resources.peak_memory(usage):
                yield usage
        finally:
            self.update(provenance=self.provenance)

    @contextmanager
    def timing(self, phase: str) -> Iterator[dict[str, Any]]:
        """Record how long the block took as `timings.<phase>`, written at once, and its memory (`measured`)."""
        started = time.perf_counter()
        with self.measured(phase) as usage:
            yield usage
        self.timings[phase] = round(time.perf_counter() - started, 2)
        self.update(timings=self.timings)

    def complete(self, metrics: dict[str, float], metric: str) -> dict[str, Any]:
        self.update(metrics=metrics, metric=metric, score=metrics.get(metric), cost=cost.of_run(self.data, self.timings),
                    status="complete")
        if self.wandb_run is not None:
            d = self.data
            summary = {"data_size": d["data_size"], "init": d["init"], "method": d["method"], "task": d["task"],
                       "seed": d["seed"], **{f"eval/{k}": v for k, v in metrics.items()},
                       **{f"time/{k}": v for k, v in self.timings.items()},
                       **{f"resources/{k.replace('.', '/')}": v
                          for k, v in tracking.flatten(self.provenance["phases"]).items()}}
            tracking.after_stop("summary", self.wandb_run.summary.update, summary)
        return self.data

    def fail(self, err: BaseException) -> None:
        self.update(status="failed", error=error_line(err))

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
