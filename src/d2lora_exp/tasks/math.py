"""Math: train on Math-Step-DPO-10K rows, evaluate zero-shot GSM8K accuracy.

SFT learns the whole correct solution (initial_reason_steps + full_chosen) after the prompt; DPO and
ORPO compare, after the shared prefix, the rest of the correct and the wrong solution (default), or only
the next step as Step-DPO does (`task.preference_target=step`). TRL ends every completion with EOS, so
single-step completions also teach the model to stop after one step.
"""

from __future__ import annotations

from datasets import Dataset

from .. import chat
from ..data import sources
from ..errors import UserError
from .base import Task

STEP_DPO_COLUMNS = {c: str for c in ("prompt", "initial_reason_steps", "chosen", "rejected", "full_chosen",
                                      "full_rejected", "answer")}
GSM8K_COLUMNS = {"question": str, "answer": str}


class MathTask(Task):
    name = "math"
    evaluator = "gsm8k"

    def train_pool(self) -> Dataset:
        ds = sources.load(self.cfg.train.data, "math training pool (Math-Step-DPO schema)")
        sources.require_columns(ds, STEP_DPO_COLUMNS, "math training pool (Math-Step-DPO schema)")
        return ds

    def eval_set(self) -> Dataset:
        ds = sources.load(self.cfg.eval.data, "GSM8K test set")
        sources.require_columns(ds, GSM8K_COLUMNS, "GSM8K test set")
        return ds

    def sft_rows(self, rows: Dataset, tokenizer) -> Dataset:
        target = self.cfg.get("sft_target", "full_solution")
        if target == "full_solution":
            completions = [a + b for a, b in zip(rows["initial_reason_steps"], rows["full_chosen"])]
        elif target == "full_chosen":
            completions = list(rows["full_chosen"])
        else:
            raise UserError(f"task.sft_target={target!r}: use full_solution or full_chosen.")
        return Dataset.from_dict({"prompt": [chat.user_prompt(tokenizer, p) for p in rows["prompt"]],
                                  "completion": completions})

    def preference_rows(self, rows: Dataset, tokenizer) -> Dataset:
        target = self.cfg.get("preference_target", "full")
        if target not in ("full", "step"):
            raise UserError(f"task.preference_target={target!r}: use full (rest of each solution) or step (next step only).")
        prefix = "full_" if target == "full" else ""
        return Dataset.from_dict({
            "prompt": [chat.user_prompt(tokenizer, p) + s for p, s in zip(rows["prompt"], rows["initial_reason_steps"])],
            "chosen": list(rows[prefix + "chosen"]),
            "rejected": list(rows[prefix + "rejected"]),
        })
