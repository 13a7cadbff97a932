"""Build a directory once, whoever else builds it at the same time and whatever dies halfway.

Every cache in the project (the tiny model, generated data, warm-up adapters, evaluations of an
initialisation) has the same needs: concurrent jobs build it once (a file lock), a killed build leaves
nothing that looks finished (a temporary directory renamed into place), and a finished entry records
what it is (`stamp`) and the digest of every file, so an entry built by other code, edited or
truncated is rebuilt instead of being silently reused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from filelock import FileLock, Timeout

from . import dist, interrupt
from .fingerprint import dir_digests

log = logging.getLogger(__name__)

MARKER = "COMPLETE.json"
T = TypeVar("T")


@dataclass
class Built(Generic[T]):
    path: Path
    reused: bool
    value: T | None  # what `build` returned; None when the entry was reused


def _valid(target: Path, stamp: str) -> bool:
    marker = target / MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    if recorded.get("stamp") != stamp:
        return False
    files = {k: v for k, v in dir_digests(target).items() if k != MARKER}
    if files != recorded.get("files"):
        log.warning("%s: files differ from the digests recorded when it was built; rebuilding it", target)
        return False
    return True


def build_once(target: Path, stamp: str, build: Callable[[Path], T], together: bool = False) -> Built[T]:
    """Make `target` hold what `build(tmp_dir)` writes for `stamp`, building it only if it does not already.

    `together`: under a launcher with several ranks, every rank calls this and runs `build` (the warm-up trains on all
    of them), while the main rank alone holds the lock, decides "reused or build" for all, and writes and renames the
    entry (a `build` writes its files on the main rank only, see dist.py). Otherwise each process builds on its own,
    the lock making concurrent ones wait for the first."""
    if together and dist.active():
        return _build_together(Path(target), stamp, build)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target) + ".lock")
    while True:  # another job may be building it for hours: a stop signal must still be heard while waiting
        try:
            lock.acquire(timeout=1)
            break
        except Timeout:
            interrupt.check(f"while waiting for another job to build {target.name}")
    try:
        tmp = _start(target, stamp)
        if tmp is None:
            return Built(target, True, None)
        try:
            value = build(tmp)
            _finish(tmp, target, stamp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        lock.release()
    return Built(target, False, value)


def _start(target: Path, stamp: str) -> Path | None:
    """Under the lock: None if `target` is a valid entry for `stamp`, else a fresh temporary directory to build in."""
    if _valid(target, stamp):
        return None
    for stale in [*target.parent.glob(f"{target.name}.tmp-*"), *target.parent.glob(f"{target.name}.old-*")]:
        # left by a killed build; we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=target.parent))


def _finish(tmp: Path, target: Path, stamp: str) -> None:
    """Under the lock: record the digests of what was built, then put it in place whole."""
    (tmp / MARKER).write_text(json.dumps({"stamp": stamp, "files": dir_digests(tmp)}, indent=1))
    if target.exists():
        # An outdated or damaged entry is replaced whole, never mixed: renamed aside first (a job still
        # reading it keeps its open files), then removed.
        old = target.with_name(f"{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _build_together(target: Path, stamp: str, build: Callable[[Path], T]) -> Built[T]:
    """build_once with every rank: the main rank takes the lock (all ranks hear a stop signal while it waits, agreed
    each second), decides and broadcasts "reused" or the directory to build in; all ranks build; the main rank
    finishes the entry and releases the lock."""
    lock = FileLock(str(target) + ".lock")
    if dist.is_main():
        target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        got = dist.on_main(_try_acquire, lock)
        if got:
            break
        dist.check_interrupt(f"while waiting for another job to build {target.name}")
    tmp = None
    try:
        tmp = dist.on_main(_start, target, stamp)
        if tmp is None:
            return Built(target, True, None)
        value = build(tmp)
        dist.on_main(_finish, tmp, target, stamp)
        return Built(target, False, value)
    finally:
        if dist.is_main():
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            lock.release()


def _try_acquire(lock: FileLock) -> bool:
    try:
        lock.acquire(timeout=1)
        return True
    except Timeout:
        return False


def read_record(target: Path, name: str) -> dict[str, Any]:
    return json.loads((Path(target) / name).read_text())
