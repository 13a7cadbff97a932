"""Small file conventions shared by every writer: JSONL rows, JSON replaced atomically, local paths."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
