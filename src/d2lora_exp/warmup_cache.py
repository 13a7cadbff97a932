"""The warm-up adapter is trained once and shared by every run that needs the same one.

The paper's point is that one initialised module serves many tasks, so a sweep must not retrain it
per run. The cache key hashes everything that determines the warm-up (model, LoRA settings, data and
its content, hyper-parameters, seed, library versions, format version). Building happens under a
file lock (concurrent jobs build it once) into a temporary directory renamed into place when
complete, so a killed build never leaves anything that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

FORMAT_VERSION = 1
RECORD = "warmup.json"


def _major_minor(module: str) -> str:
    from importlib.metadata import version

    return ".".join(version(module).split(".")[:2])


def _file_sha(path: str) -> str | None:
    p = Path(os.path.expanduser(path))
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def key_material(cfg: DictConfig, dtype: str) -> dict[str, Any]:
    warm = OmegaConf.to_container(cfg.warmup, resolve=True)
    data = dict(warm.pop("data"))
    # The location of a local file does not matter, its bytes do; a built model is named by its builder.
    data_sha = _file_sha(str(data["path"]))
    if data_sha:
        data = {"content_sha256": data_sha, "split": data.get("split")}
    model = ({"build": cfg.model.build, "name": cfg.model.name} if cfg.model.get("build")
             else {"name_or_path": cfg.model.name_or_path, "revision": cfg.model.get("revision")})
    return {
        "format": FORMAT_VERSION,
        "model": {**model, "dtype": dtype},
        "lora": OmegaConf.to_container(cfg.lora, resolve=True),
        "init_base": cfg.init.get("base", "default"),
        "calibration": (OmegaConf.to_container(cfg.calibration, resolve=True)
                        if cfg.init.get("base") in ("eva", "corda") else None),
        "data": data,
        "warmup": warm,
        "train": OmegaConf.to_container(cfg.train, resolve=True),
        "seed": int(cfg.seed),
        "versions": {m: _major_minor(m) for m in ("torch", "transformers", "peft", "trl")},
    }


def cache_key(material: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]


def get_or_build(cache_root: Path, material: dict[str, Any], build: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any], bool]:
    """Return (adapter dir, its record, whether it was reused); `build(tmp_dir)` saves an adapter there."""
    key = cache_key(material)
    cache_root.mkdir(parents=True, exist_ok=True)
    final = cache_root / key
    with FileLock(str(final) + ".lock"):
        if (final / RECORD).is_file():
            return final, json.loads((final / RECORD).read_text()), True
        for stale in cache_root.glob(f"{key}.tmp-*"):  # left by a killed build; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{key}.tmp-", dir=cache_root))
        try:
            stats = build(tmp)
            record = {"key": key, "material": material, **stats}
            (tmp / RECORD).write_text(json.dumps(record, indent=2, default=str))
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final, record, False
