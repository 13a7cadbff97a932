"""The interface every task implements: its training pool, its held-out set, and how rows become TRL rows.

How the held-out set is scored is the evaluator's job (`evaluator`, a name in `evaluation.EVALUATORS`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from datasets import Dataset

from ..errors import UserError


class Task(ABC):
    name: str
    evaluator: str  # the task's own evaluator, what `task` means in eval.evaluators

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
