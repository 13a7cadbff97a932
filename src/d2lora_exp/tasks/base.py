"""The interface every task implements, and the bits of evaluation all tasks share."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from datasets import Dataset

from ..errors import UserError


class Task(ABC):
    name: str

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    @abstractmethod
    def train_pool(self) -> Dataset:
        """All rows the training subsets are drawn from, schema-checked."""

    @abstractmethod
    def eval_set(self) -> Dataset:
        """The held-out rows the task metric is computed on, schema-checked."""

    @abstractmethod
    def sft_rows(self, rows: Dataset, tokenizer) -> Dataset:
        """Rows with text `prompt` (chat-rendered) and `completion`."""

    def preference_rows(self, rows: Dataset, tokenizer) -> Dataset:
        """Rows with text `prompt`, `chosen`, `rejected` for DPO/ORPO."""
        raise UserError(f"task {self.name!r} has no preference pairs, so DPO/ORPO cannot train on it; use method=sft.")

    @abstractmethod
    def evaluate(self, model, tokenizer, eval_cfg: Any, out_dir: Path) -> dict[str, float]:
        """Score the model; writes per-example predictions to out_dir/predictions.jsonl."""


def limited(ds: Dataset, limit: int | None) -> Dataset:
    return ds if limit is None or limit >= len(ds) else ds.select(range(int(limit)))


def write_predictions(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
