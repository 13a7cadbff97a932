"""Preemption and time limits: a signal asks the run to stop at the next safe point, never in the middle.

SLURM sends SIGTERM before it kills a job (`scancel`, `scontrol requeue`, preemption), `--signal=USR1@...` or
submitit's USR2 before a time limit. A Python signal handler runs between two bytecodes, which may be halfway
through an optimizer step or a file write, so the handler only records the signal; the training phases look at
it after every optimizer step (checkpointing.py saves a checkpoint and stops the trainer there), and the recipe
looks at it between phases. The run then records `status: interrupted` and hands the signal back to whoever
had it before (submitit's handler requeues the job), or exits with 128 + the signal number.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class Interrupted(BaseException):
    """Raised at a safe point after a stop signal. A BaseException so that no `except Exception` (Hydra's job
    runner, a library's retry loop) mistakes it for a failed run and carries on with the next one."""

    def __init__(self, signum: int, where: str) -> None:
        super().__init__(f"{signal.Signals(signum).name} received; stopped {where}")
        self.signum = signum


class _State:
    received: int | None = None  # process-wide: once asked to stop, no later run of this process starts
    previous: dict[int, Any] = {}


def _record(signum: int, frame: Any) -> None:
    if _State.received is None:
        _State.received = signum
        log.warning("%s received: stopping at the next safe point (a checkpoint is saved first)",
                    signal.Signals(signum).name)


def requested() -> int | None:
    """The stop signal received so far, or None."""
    return _State.received


def check(where: str) -> None:
    """Raise Interrupted if a stop signal arrived (call it where stopping loses nothing)."""
    if _State.received is not None:
        raise Interrupted(_State.received, where)


@contextmanager
def guard() -> Iterator[None]:
    """Record stop signals while the block runs; the handlers that were there before come back afterwards."""
    check("before the run started")
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    try:
        for sig in SIGNALS:
            signal.signal(sig, _record)
    except ValueError:  # not the main thread (e.g. a thread-pool launcher): signals cannot be caught here
        previous = {}
    _State.previous = previous
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def hand_over(err: Interrupted) -> None:
    """After the run recorded its state: let the signal's earlier owner act on it (submitit's USR2 handler
    checkpoints the job and requeues it), then leave with the conventional 128 + signal number."""
    handler = _State.previous.get(err.signum)
    if callable(handler):
        log.info("handing %s to %s", signal.Signals(err.signum).name, getattr(handler, "__qualname__", handler))
        handler(err.signum, None)
    sys.exit(128 + err.signum)


def reset() -> None:
    """Forget a received signal (tests run several recipes in one process)."""
    _State.received = None
