"""One GPU per job when a local sweep runs several jobs at once on a multi-GPU node.

No Hydra launcher assigns GPUs (a long-standing Hydra request), so each job process claims a free
GPU slot through a file lock and narrows CUDA_VISIBLE_DEVICES to it before CUDA is initialised. A
worker process keeps its slot for its lifetime (joblib reuses workers), so two concurrent jobs never
share a GPU, and a job waits when more jobs run than there are GPUs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from filelock import FileLock, Timeout

_claimed: tuple[str, FileLock] | None = None


def visible_gpus() -> list[str]:
    """GPU ids this process may use, read without initialising CUDA (D2LORA_GPUS overrides, for tests)."""
    for var in ("D2LORA_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = os.environ.get(var)
        if value is not None:
            return [g.strip() for g in value.split(",") if g.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return [str(i) for i, line in enumerate(proc.stdout.splitlines()) if line.startswith("GPU ")]


def claim(lock_dir: Path, poll_seconds: float = 0.5) -> str | None:
    """Claim one GPU for this process (or keep the one it has); None where there are fewer than two."""
    global _claimed
    if _claimed is not None:
        return _claimed[0]
    gpus = visible_gpus()
    if len(gpus) < 2:
        return None
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for gpu in gpus:
            lock = FileLock(str(lock_dir / f"gpu-{gpu}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            _claimed = (gpu, lock)
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            return gpu
        time.sleep(poll_seconds)
