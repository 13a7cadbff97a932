"""ARC-Easy as the forgetting benchmark (paper Exp3), scored by the log-likelihood of each choice.

Each choice is scored as the assistant's reply to a chat turn holding the question (choices are not listed
in the prompt, lm-evaluation-harness style), so no answer format must be learnt and a model that forgot
general knowledge shows it directly. The scoring runs in lm-evaluation-harness, as the task this project
ships (`harness_tasks/d2lora_arc_easy.yaml`); three accuracies, the harness's `acc`, `acc_norm` and
`acc_bytes`: `arc_acc` picks the choice with the highest summed log-probability; `arc_acc_norm` divides it
by the choice's length in characters first, which removes the bias toward short answers; `arc_acc_bytes`
divides by its length in UTF-8 bytes (they differ only on choices such as "32°C" or "El Niño").
"""

from __future__ import annotations

from typing import Any

from ..data import sources
from ..errors import UserError
from ..fingerprint import content_config
from .base import Evaluator, data_source, limited

ARC_COLUMNS = {"question": str, "choices": dict, "answerKey": str}


def gold_index(row: dict) -> int:
    """Labels are A-D in most rows, 1-4 in about 4%, and some rows have 3 or 5 choices."""
    labels = list(row["choices"]["label"])
    if row["answerKey"] not in labels:
        raise UserError(f"ARC-Easy row {row.get('id', '?')}: answerKey {row['answerKey']!r} is not among labels {labels}.")
    return labels.index(row["answerKey"])


class ArcEasy(Evaluator):
    """Forgetting (paper Exp3): ARC-Easy from `eval.arc_easy_data`, every row's gold label checked up front."""

    name = "arc_easy"
    WHAT = "ARC-Easy (forgetting)"

    def __init__(self, cfg: Any, task) -> None:
        self.data = data_source(cfg, "arc_easy_data", self.name, "ARC-Easy: set eval.arc_easy_data (every data config "
                                "has it as data.arc_easy_test).")
        rows = sources.load(self.data, self.WHAT)
        sources.require_columns(rows, ARC_COLUMNS, self.WHAT)
        self.rows = limited(rows, cfg.eval.limit)
        for row in self.rows:
            gold_index(row)
        self.batch_size = int(cfg.eval.batch_size)

    def material(self) -> dict[str, Any]:
        return {"data": content_config(self.data), "n": len(self.rows)}

    def harness_spec(self):
        from .harness import Spec

        return Spec("d2lora_arc_easy", self.rows,
                    metrics={"acc": "arc_acc", "acc_norm": "arc_acc_norm", "acc_bytes": "arc_acc_bytes"},
                    keep=("id", "question", "choices", "answerKey"), n_metric="arc_n")
