"""Load any dataset the configs name, from the hub or from a local JSON/JSONL/CSV/Parquet file.

Every loader states the columns it needs; a file without them fails here, naming the columns it
has, before anything trains.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from ..errors import UserError
from ..files import is_local_path

_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def load(source: Mapping[str, Any], what: str) -> Dataset:
    """Load one split as a `datasets.Dataset`; `what` names the dataset role in error messages."""
    import datasets

    path = str(source["path"])
    split = source.get("split") or "train"
    if is_local_path(path):
        local = Path(os.path.expanduser(path))
        if not local.exists():
            raise UserError(f"{what}: file {local} does not exist. Fix the path in the data config or on the command line.")
        if local.is_file():
            builder = _BUILDERS.get(local.suffix)
            if builder is None:
                raise UserError(f"{what}: {local} has suffix {local.suffix!r}; use one of {sorted(_BUILDERS)}.")
            _check_text_file(local, builder, what)
            try:
                ds = datasets.load_dataset(builder, data_files=str(local), split="train")
            except Exception as err:
                if "corresponds to no data" in str(err):
                    raise UserError(f"{what}: {local} has no rows.") from err
                reason = f"{err.__class__.__name__}: {err}".strip().rstrip(":")
                raise UserError(f"{what}: {local} could not be parsed as {builder} ({reason.splitlines()[0]}).") from err
        else:
            ds = datasets.load_dataset(str(local), split=split)
    else:
        kwargs = {k: source[k] for k in ("name", "data_files", "revision") if source.get(k) is not None}
        try:
            ds = datasets.load_dataset(path, split=split, **kwargs)
        except Exception as err:
            raise UserError(
                f"{what}: could not load {path!r} from the hub ({err.__class__.__name__}: {str(err).splitlines()[0]}). "
                "Without network, download it elsewhere and point the data config at a local file with the same columns."
            ) from err
    if len(ds) == 0:
        raise UserError(f"{what}: {path} has no rows.")
    return ds


def _check_text_file(path: Path, builder: str, what: str) -> None:
    """An empty file or a non-UTF-8 byte would surface deep inside `datasets` (an empty message, or a decode
    traceback): say which file, and for a bad byte which line, here."""
    if path.stat().st_size == 0:
        raise UserError(f"{what}: {path} is empty (0 bytes); point the data config at a file with rows.")
    if builder == "parquet":
        return
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(f"{what}: {path} is not UTF-8 (byte 0x{data[err.start]:02x} on line {line}); "
                        "re-encode it as UTF-8.") from err


def require_columns(ds: Dataset, columns: Mapping[str, type | tuple[type, ...]], what: str) -> None:
    """Fail with the missing columns and the ones present, or with the first row whose value has the wrong type."""
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise UserError(
            f"{what}: missing column(s) {missing}; the data has {ds.column_names}. Use data in the real schema "
            "or rename the columns (for the titles task, set task.columns.*)."
        )
    for column, kind in columns.items():  # every row that will be used, not only the first
        for i, value in enumerate(ds[column]):
            if not isinstance(value, kind):
                expected = getattr(kind, "__name__", str(kind))
                raise UserError(f"{what}: row {i} column {column!r} is {type(value).__name__} ({_short(value)}) where "
                                f"{expected} is expected; fix or drop that row.")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def require_size(n_requested: int, pool: Sequence | Dataset, what: str) -> None:
    if n_requested < 0:
        raise UserError(f"data_size={n_requested} is negative; use an integer >= 0 (0 evaluates the initialisation).")
    if n_requested > len(pool):
        raise UserError(
            f"data_size={n_requested} exceeds the {len(pool)} rows of the {what}; "
            f"use data_size <= {len(pool)} or a larger dataset (e.g. experiment=paper for the hub data)."
        )
