"""Titles: generate an econ paper's title from its abstract; ROUGE on pairs held out from the same file.

The held-out pairs are chosen by their own seed before the training pool is formed, so no training
subset of any size can contain them.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from datasets import Dataset

from .. import chat
from ..data import sources
from ..errors import UserError
from .base import Task


class TitlesTask(Task):
    name = "titles"
    evaluator = "titles_rouge"

    @cached_property
    def _split(self) -> tuple[Dataset, Dataset]:
        what = "titles data (econ abstracts CSV)"
        ds = sources.load(self.cfg.train.data, what)
        cols = self.cfg.columns
        sources.require_columns(ds, {cols.abstract: str, cols.title: str}, what)
        ds = ds.rename_columns({cols.abstract: "abstract", cols.title: "title"}) if (cols.abstract, cols.title) != ("abstract", "title") else ds
        holdout = int(self.cfg.eval.holdout)
        if holdout >= len(ds):
            raise UserError(f"{what}: {len(ds)} rows cannot hold out task.eval.holdout={holdout} pairs and still train.")
        order = np.random.default_rng(int(self.cfg.eval.holdout_seed)).permutation(len(ds))
        return ds.select(order[holdout:].tolist()), ds.select(sorted(order[:holdout].tolist()))

    def train_pool(self) -> Dataset:
        return self._split[0]

    def eval_set(self) -> Dataset:
        return self._split[1]

    def prompt(self, tokenizer, abstract: str) -> str:
        return chat.user_prompt(tokenizer, self.cfg.instruction + abstract)

    def sft_rows(self, rows: Dataset, tokenizer) -> Dataset:
        return Dataset.from_dict({
            "prompt": [self.prompt(tokenizer, a) for a in rows["abstract"]],
            "completion": list(rows["title"]),
        })
