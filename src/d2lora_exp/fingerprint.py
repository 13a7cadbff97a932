"""One way to fingerprint configs and files, so every cache key and run hash means the same thing.

A key must not change with dict order or with where a local file lives (only its bytes matter), and
it must change with anything that changes what is computed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .files import is_local_path


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys), shortened; the project's only config hash."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(Path(path).expanduser(), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dir_digests(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `root`: what a cache entry records and verifies."""
    return {str(p.relative_to(root)): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def data_identity(source: dict[str, Any]) -> dict[str, Any]:
    """A dataset as a key sees it: a local file by its content, a hub dataset by its id and revision."""
    path = str(source.get("path"))
    local = Path(path).expanduser()
    if is_local_path(path) and local.is_file():
        return {"content_sha256": file_sha256(local), "split": source.get("split")}
    return {k: v for k, v in source.items()}


def major_minor(module: str) -> str:
    from importlib.metadata import version

    return ".".join(version(module).split(".")[:2])


def library_versions() -> dict[str, str]:
    """The libraries whose version can change a trained adapter or a score."""
    return {m: major_minor(m) for m in ("torch", "transformers", "peft", "trl")}


def content_config(obj: Any) -> Any:
    """A resolved config with every data source replaced by its identity (`data_identity`), recursively."""
    if isinstance(obj, dict):
        if "path" in obj and isinstance(obj.get("path"), str):
            return data_identity(obj)
        return {k: content_config(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [content_config(v) for v in obj]
    return obj
