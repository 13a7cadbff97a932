"""Titles: generate an econ paper's title from its abstract; ROUGE on pairs held out from the same file.

The held-out pairs are chosen by their own seed before the training pool is formed, so no training
subset of any size can contain them.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from .. import chat, generation
from ..data import sources
from ..errors import UserError
from ..metrics import rouge
from ..stats import bootstrap_ci
from .base import Task, limited, write_predictions


class TitlesTask(Task):
    name = "titles"

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

    def _prompt(self, tokenizer, abstract: str) -> str:
        return chat.user_prompt(tokenizer, self.cfg.instruction + abstract)

    def sft_rows(self, rows: Dataset, tokenizer) -> Dataset:
        return Dataset.from_dict({
            "prompt": [self._prompt(tokenizer, a) for a in rows["abstract"]],
            "completion": list(rows["title"]),
        })

    def evaluate(self, model, tokenizer, eval_cfg: Any, out_dir: Path) -> dict[str, float]:
        ds = limited(self.eval_set(), eval_cfg.limit)
        prompts = [self._prompt(tokenizer, a) for a in ds["abstract"]]
        outputs = generation.generate(model, tokenizer, prompts, eval_cfg.batch_size, eval_cfg.max_new_tokens, "eval titles")
        outputs = [o.strip().splitlines()[0] if o.strip() else "" for o in outputs]
        scores = rouge.score(outputs, list(ds["title"]))
        per_example = [rouge.per_example(o, t) for o, t in zip(outputs, ds["title"])]
        write_predictions(out_dir / "predictions.jsonl", [
            {"abstract": a, "reference": t, "output": o, **e}
            for a, t, o, e in zip(ds["abstract"], ds["title"], outputs, per_example)
        ])
        # Bootstrap over the held-out pairs: how much the score moves with which pairs were drawn.
        low, high = bootstrap_ci([e["rougeL"] for e in per_example])
        return {"rouge1": scores["rouge1"], "rouge2": scores["rouge2"], "rougeL": scores["rougeL"],
                "rougeL_ci95_low": low, "rougeL_ci95_high": high, "eval_n": scores["n"]}
