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

from . import interrupt
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


def build_once(target: Path, stamp: str, build: Callable[[Path], T]) -> Built[T]:
    """Make `target` hold what `build(tmp_dir)` writes for `stamp`, building it only if it does not already."""
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
        if _valid(target, stamp):
            return Built(target, True, None)
        for stale in [*target.parent.glob(f"{target.name}.tmp-*"), *target.parent.glob(f"{target.name}.old-*")]:
            # left by a killed build; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=target.parent))
        try:
            value = build(tmp)
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
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        lock.release()
    return Built(target, False, value)


def read_record(target: Path, name: str) -> dict[str, Any]:
    return json.loads((Path(target) / name).read_text())
