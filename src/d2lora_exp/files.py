"""Small file conventions shared by every writer: JSONL rows, JSON replaced atomically, local paths."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import UserError

# A path, not a hub id: what a user writes for a local file or directory.
_LOCAL_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


def is_local_path(name: str) -> bool:
    """`./x`, `/x`, `~/x`, a data file suffix, or anything that exists here; hub ids are `owner/name`."""
    return name.startswith((".", "/", "~")) or name.endswith(_LOCAL_SUFFIXES) or os.path.exists(name)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """One JSON object a line, UTF-8 as is (not escaped), `\\n` endings: byte-identical on every machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def write_json_atomic(path: Path, data: Any) -> None:
    """A reader (another job, a report) never sees half a file: write beside it, then rename over it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def check_writable(path: Path, setting: str) -> None:
    """Raise UserError naming `path` and `setting` (what to change) unless `path` is, or can be made, a directory
    this process writes to.

    A read-only mount, a full quota or a path under a regular file would otherwise surface as an OSError traceback
    after the model loaded (the cache) or minutes into training (the adapter). `os.access` cannot tell (it says yes
    to root on a read-only mount), so a real file is created and removed, in `path` or its nearest existing
    ancestor: nothing is created that the run would not create itself."""
    existing = Path(os.path.abspath(os.path.expanduser(path)))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file, not a directory")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UserError(f"{path} is not writable ({err.strerror or err}): point {setting} at a directory "
                        "this job can write.") from err
