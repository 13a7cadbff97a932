"""ARC-Easy as the forgetting benchmark (paper Exp3), scored by the log-likelihood of each choice.

Each choice is scored as the assistant's continuation of a chat prompt holding the question (choices
are not listed in the prompt, lm-evaluation-harness style), so no answer format must be learnt and a
model that forgot general knowledge shows it directly. Three accuracies, named and computed as
lm-evaluation-harness's `acc`, `acc_norm` and `acc_bytes` (lm_eval/api/task.py, multiple_choice):
`arc_acc` picks the choice with the highest summed log-probability; `arc_acc_norm` divides it by the
choice's length in characters first, which removes the bias toward short answers; `arc_acc_bytes`
divides by its length in UTF-8 bytes (they differ only on choices such as "32°C" or "El Niño").
Ties go to the first choice, as numpy's argmax does in the harness.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from .. import chat, interrupt
from ..data import sources
from ..errors import UserError
from ..files import write_jsonl
from ..fingerprint import content_config
from .base import Evaluator, data_source, limited

ARC_COLUMNS = {"question": str, "choices": dict, "answerKey": str}
# metric -> (suffix of its columns in the predictions file, what the summed log-probability is divided by).
NORMALISATIONS: dict[str, tuple[str, Callable[[str], int]]] = {
    "arc_acc": ("", lambda text: 1),
    "arc_acc_norm": ("_norm", lambda text: max(1, len(text))),
    "arc_acc_bytes": ("_bytes", lambda text: max(1, len(text.encode("utf-8")))),
}


def _argmax(values: list[float]) -> int:
    """The first best index, as numpy's argmax, so ties resolve as in the harness."""
    return max(range(len(values)), key=values.__getitem__)


def gold_index(row: dict) -> int:
    """Labels are A-D in most rows, 1-4 in about 4%, and some rows have 3 or 5 choices."""
    labels = list(row["choices"]["label"])
    if row["answerKey"] not in labels:
        raise UserError(f"ARC-Easy row {row.get('id', '?')}: answerKey {row['answerKey']!r} is not among labels {labels}.")
    return labels.index(row["answerKey"])


def prompt_text(tokenizer, question: str) -> str:
    """The question alone: choices are NOT listed, each is scored as the assistant's continuation.

    As in lm-evaluation-harness, so the score measures knowledge, not the ability to pick a letter.
    """
    return chat.user_prompt(tokenizer, f"{question}\nAnswer:")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@torch.inference_mode()
def choice_logprobs(model, tokenizer, prompts: list[str], continuations: list[str], batch_size: int) -> list[tuple[float, int]]:
    """(sum of log p(continuation tokens | prompt), number of continuation tokens) per pair.

    The continuation starts where the tokens of prompt+continuation diverge from the prompt's, so
    tokens merging across the boundary are scored as part of the answer. An empty continuation
    scores (0.0, 0). Right padding keeps each sequence's positions those of the unpadded one.
    """
    pairs = []
    for prompt, cont in zip(prompts, continuations, strict=True):
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full = tokenizer(prompt + cont, add_special_tokens=False)["input_ids"]
        pairs.append((full, max(_common_prefix(p_ids, full), 1)))  # token 0 has no prediction
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[tuple[float, int]] = []
    try:
        for i in range(0, len(pairs), batch_size):
            interrupt.check("during evaluation")
            batch = pairs[i : i + batch_size]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, (seq, _) in enumerate(batch):
                ids[j, : len(seq)] = torch.tensor(seq)
                mask[j, : len(seq)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
            targets = ids[:, 1:].to(device)
            token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).cpu()
            for j, (seq, start) in enumerate(batch):
                # token t is predicted at position t-1
                out.append((float(token_lp[j, start - 1 : len(seq) - 1].sum()), len(seq) - start))
    finally:
        model.train(was_training)
    return out


def evaluate_arc(model, tokenizer, dataset: Dataset, batch_size: int, out_path: Path | None = None) -> dict[str, float]:
    """Percent accuracies over all rows; the per-row JSONL lets a surprising score be inspected."""
    rows = list(dataset)
    golds = [gold_index(row) for row in rows]  # a bad row fails before the expensive scoring
    prompts, conts = [], []
    for row in rows:
        prompt = prompt_text(tokenizer, row["question"])
        prompts += [prompt] * len(row["choices"]["text"])
        conts += list(row["choices"]["text"])
    scores: list[tuple[float, int]] = []
    with tqdm(total=len(prompts), desc="eval arc-easy", unit="choice") as bar:
        for i in range(0, len(prompts), batch_size * 8):
            scores += choice_logprobs(model, tokenizer, prompts[i : i + batch_size * 8], conts[i : i + batch_size * 8], batch_size)
            bar.update(min(batch_size * 8, len(prompts) - i))
    records, k = [], 0
    for row, gold in zip(rows, golds):
        n = len(row["choices"]["text"])
        records.append(_record(row, gold, [s for s, _ in scores[k : k + n]]))
        k += n
    if out_path is not None:
        write_jsonl(out_path, records)
    n_rows = max(1, len(rows))
    return {**{name: 100.0 * sum(r[f"correct{suffix}"] for r in records) / n_rows
               for name, (suffix, _) in NORMALISATIONS.items()}, "arc_n": len(rows)}


def _record(row: dict, gold: int, lps: list[float]) -> dict[str, Any]:
    """One row's picks under every normalisation, so each accuracy can be recomputed from the predictions file."""
    texts, labels = list(row["choices"]["text"]), row["choices"]["label"]
    picks = {suffix: _argmax([lp / length(t) for lp, t in zip(lps, texts)]) for suffix, length in NORMALISATIONS.values()}
    return {"id": row.get("id"), "question": row["question"], "choices": texts, "gold": row["answerKey"],
            **{f"pred{suffix}": labels[pick] for suffix, pick in picks.items()}, "logprobs": lps,
            **{f"correct{suffix}": pick == gold for suffix, pick in picks.items()}}


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

    def evaluate(self, model, tokenizer, out_dir: Path) -> dict[str, float]:
        return evaluate_arc(model, tokenizer, self.rows, self.batch_size, self.predictions_path(out_dir))

    def harness_spec(self):
        from .harness import Spec

        return Spec("d2lora_arc_easy", self.rows, metrics={"acc": "arc_acc", "acc_norm": "arc_acc_norm", "acc_bytes": "arc_acc_bytes"},
                    keep=("id", "question", "answerKey"), n_metric="arc_n")
