"""Scoring of the project's lm-evaluation-harness tasks: this project's GSM8K extraction (and Math-Verify) and
ROUGE, so a reply is judged the same whether the task runs inside a d2lora_exp run or standalone in `lm_eval`."""

from __future__ import annotations

from collections.abc import Sequence

from d2lora_exp.evaluation import gsm8k, rouge


def first_line(text: str) -> str:
    """A title is one line: what follows the first line break is not part of it."""
    text = text.strip()
    return text.splitlines()[0] if text else ""


def gsm8k_results(doc: dict, results: list[str], checkers: Sequence[str] = ("ours",)) -> dict[str, float]:
    """Per-row 0/1 for both accuracies, and Math-Verify's verdict when asked (the harness averages them)."""
    reply = results[0].strip()
    scores = gsm8k.score([reply], [doc["answer"]])
    out = {"accuracy": scores["accuracy"] / 100.0, "strict_accuracy": scores["strict_accuracy"] / 100.0}
    if "math_verify" in checkers:
        out["accuracy_math_verify"] = float(gsm8k.math_verify_verdicts([reply], [doc["answer"]])[0][0])
    return out


def titles_results(doc: dict, results: list[str]) -> dict[str, float]:
    """Per-row ROUGE F1 in [0, 1] (the harness averages them; the mean of per-row F1 is `evaluate`'s convention)."""
    return {key: value / 100.0 for key, value in rouge.per_example(first_line(results[0]), doc["title"]).items()}
