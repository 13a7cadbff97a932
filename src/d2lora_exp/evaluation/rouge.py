"""ROUGE for generation tasks, computed locally.

``rouge_score`` is used directly because ``evaluate.load("rouge")`` fetches its script from the Hub,
which offline runs cannot reach; the settings (F1, Porter stemming) match what ``evaluate`` reports.
"""

from __future__ import annotations

from functools import lru_cache

from rouge_score import rouge_scorer

_KEYS = ("rouge1", "rouge2", "rougeL")


@lru_cache(maxsize=1)
def _scorer() -> rouge_scorer.RougeScorer:
    """One scorer per process: building it loads the stemmer, which is slow to repeat per example."""
    return rouge_scorer.RougeScorer(list(_KEYS), use_stemmer=True)


def per_example(prediction: str, reference: str) -> dict:
    """F1 x 100 per ROUGE variant, so callers can log per-example rows alongside the corpus means."""
    scores = _scorer().score(reference, prediction)
    return {key: 100.0 * scores[key].fmeasure for key in _KEYS}


def score(predictions: list[str], references: list[str]) -> dict:
    """Mean per-example F1 x 100 (not pooled counts), the convention of ``evaluate``'s rouge."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; they must pair up")
    if not predictions:
        raise ValueError("no predictions to score")
    rows = [per_example(p, r) for p, r in zip(predictions, references)]
    result: dict = {key: sum(row[key] for row in rows) / len(rows) for key in _KEYS}
    result["n"] = len(rows)
    return result
