"""Checkpoints inside a training phase, so that a killed, preempted or timed-out run resumes where it was.

The Trainer's own checkpoint holds what an exact resume needs: the adapter, optimizer, scheduler and RNG
states, and the step (the data position: the Trainer skips the batches already seen). What it lacks is a mark
that the checkpoint was written to the end (a kill can come halfway through a save) and the running loss sum
(the Trainer restarts its average at the resume point). `CheckpointCallback` adds both in
`d2lora_checkpoint.json`, with the sha256 of every file; `latest()` only returns a checkpoint whose files all
match it. When is set by `train.checkpoint_every` ("500steps", "30min", null = only on a stop signal) and how
many are kept by `train.checkpoint_keep`; a phase removes its checkpoints once its result is saved.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from . import dist, interrupt
from .files import write_json_atomic
from .fingerprint import dir_digests

log = logging.getLogger(__name__)

MARK = "d2lora_checkpoint.json"
EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(steps?|min)\s*$")


@dataclass(frozen=True)
class Schedule:
    steps: int | None = None
    minutes: float | None = None
    keep: int = 2


def parse_every(value: Any) -> tuple[int | None, float | None]:
    """`500steps` -> (500, None), `30min` -> (None, 30.0), null -> (None, None). ValueError names the forms."""
    if value is None:
        return None, None
    match = EVERY.match(str(value))
    if not match or float(match.group(1)) <= 0 or (match.group(2).startswith("step") and "." in match.group(1)):
        raise ValueError(f"{value!r}: use '<N>steps' (N >= 1), '<M>min' (M > 0) or null (only on a stop signal)")
    number, unit = match.groups()
    return (int(number), None) if unit.startswith("step") else (None, float(number))


def schedule(train_cfg: Any) -> Schedule:
    steps, minutes = parse_every(train_cfg.get("checkpoint_every"))
    return Schedule(steps=steps, minutes=minutes, keep=int(train_cfg.get("checkpoint_keep", 2)))


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    loss_logged: float  # the sum of the losses logged up to `last_logged` (the Trainer's _total_loss_scalar)
    loss_unlogged: float  # the sum since then, not yet logged (its _tr_loss), of the main rank
    last_logged: int
    loss_unlogged_ranks: tuple[float, ...] = ()  # each rank's own, when several trained (their mean is logged)

    def unlogged(self, rank: int) -> float:
        """The not yet logged loss sum of `rank` (the one rank's, for a checkpoint of one process)."""
        return self.loss_unlogged_ranks[rank] if self.loss_unlogged_ranks else self.loss_unlogged


def layout_key(key: str, sharded: bool) -> str:
    """Whose checkpoints, and in which layout: a sharded run's (dist=fsdp, several processes; fsdp_checkpoint.py,
    optimizer state keyed by parameter name) cannot take a DDP run's (keyed by index), nor the reverse, so a rerun
    that changed `dist` starts its phase again instead of failing on the other layout's files."""
    return key if not sharded else f"{key}-fsdp"


def _step(path: Path) -> int:
    return int(path.name.split("-")[-1])


def _read(path: Path, key: str) -> Checkpoint | None:
    try:
        mark = json.loads((path / MARK).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if mark.get("key") != key:
        log.warning("%s: written for another run (key %s, not %s); not resumed from", path, mark.get("key"), key)
        return None
    files = {k: v for k, v in dir_digests(path).items() if k != MARK}
    if files != mark.get("files"):
        log.warning("%s: incomplete or damaged (its files differ from the ones recorded); not resumed from", path)
        return None
    if int(mark.get("world_size", 1)) != dist.world_size():
        log.warning("%s: written by %s processes, this job has %d; not resumed from", path,
                    mark.get("world_size", 1), dist.world_size())
        return None
    return Checkpoint(path, int(mark["step"]), float(mark["loss_logged"]), float(mark["loss_unlogged"]),
                      int(mark["last_logged"]), tuple(float(x) for x in mark.get("loss_unlogged_ranks", ())))


def latest(directory: Path, key: str) -> Checkpoint | None:
    """The newest checkpoint under `directory` written to the end for `key` (the run's or warm-up's), or None."""
    for path in sorted(Path(directory).glob("checkpoint-*"), key=_step, reverse=True):
        checkpoint = _read(path, key)
        if checkpoint is not None:
            return checkpoint
    return None


def remove(directory: Path) -> None:
    """A phase's checkpoints, once its final result is saved (they are large and now useless); the parent
    `checkpoints/` goes too once it is empty."""
    directory = Path(directory)
    shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty (another phase's or job's checkpoints) or already gone
        directory.parent.rmdir()


class CheckpointCallback(TrainerCallback):
    """Saves on the schedule and on a stop signal (then stops the trainer); marks each finished save, then keeps
    the newest `keep` marked ones (the Trainer's own rotation would delete old ones before the new one is marked)."""

    def __init__(self, plan: Schedule, key: str) -> None:
        self.plan = plan
        self.key = key
        self.resume: Checkpoint | None = None  # set by training.train before trainer.train()
        self.trainer = None  # set by training.train: the running loss sums live on the trainer
        self._last_save = time.monotonic()

    @property
    def loss_before(self) -> float:
        """The sum of the losses logged before the resume point (the Trainer restarts its own at zero)."""
        return self.resume.loss_logged if self.resume else 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        # Put back the Trainer's logging window as it was at the checkpoint, so the first loss logged after a
        # resume averages the same steps as in a run never interrupted.
        if self.resume is not None:
            self.trainer._tr_loss += self.resume.unlogged(dist.rank())
            self.trainer._globalstep_last_logged = self.resume.last_logged
        return control

    def on_step_end(self, args, state, control, **kwargs):
        due = (self.plan.steps is not None and state.global_step % self.plan.steps == 0) or (
            self.plan.minutes is not None and time.monotonic() - self._last_save >= self.plan.minutes * 60)
        # Agreed by every rank (their clocks and the moments a signal reaches them differ): all save and stop together.
        stop, due = dist.all_max([int(interrupt.requested() is not None), int(due)])
        if stop:
            control.should_save = True
            control.should_training_stop = True
        elif due and state.global_step < state.max_steps:  # the last step's result is the phase's own output
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        """Every rank has written its part (the main rank the adapter and optimizer, each rank its RNG state): then the
        main rank marks the checkpoint with every file's digest and rotates."""
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        trainer = self.trainer
        unlogged = dist.all_gather(float(trainer._tr_loss.item()))  # each rank's own running sum
        if dist.is_main():
            mark = {"key": self.key, "step": state.global_step,
                    "loss_logged": self.loss_before + trainer._total_loss_scalar, "loss_unlogged": unlogged[0],
                    "last_logged": trainer._globalstep_last_logged, "files": dir_digests(path)}
            if dist.active():
                mark.update(world_size=dist.world_size(), loss_unlogged_ranks=unlogged)
            write_json_atomic(path / MARK, mark)
            log.info("checkpoint at step %d/%d -> %s", state.global_step, state.max_steps, path)
            self._rotate(Path(args.output_dir), state.global_step)
        self._last_save = time.monotonic()
        dist.barrier()
        return control

    def _rotate(self, directory: Path, newest: int) -> None:
        found = sorted(directory.glob("checkpoint-*"), key=_step)
        marked = [p for p in found if (p / MARK).is_file()]
        keep = set(marked[-self.plan.keep:])
        for path in found:
            if path not in keep and _step(path) <= newest:
                shutil.rmtree(path, ignore_errors=True)
