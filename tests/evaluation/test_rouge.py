"""ROUGE wrapper: boundary values, a hand-computed case, and stemming."""

from __future__ import annotations

import pytest

from d2lora_exp.evaluation import rouge


def test_identical_is_100_and_disjoint_is_0() -> None:
    result = rouge.score(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert result == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0, "n": 1})
    assert rouge.per_example("alpha beta", "gamma delta") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_hand_computed_prefix() -> None:
    # 3 of 3 predicted unigrams match 3 of 6 reference ones: P=1, R=0.5, F1=2/3.
    # Bigrams: 2 of 2 predicted, 2 of 5 reference: P=1, R=0.4, F1=0.8/1.4.
    got = rouge.per_example("the cat sat", "the cat sat on the mat")
    assert got["rouge1"] == pytest.approx(200 / 3)
    assert got["rouge2"] == pytest.approx(100 * 0.8 / 1.4)
    assert got["rougeL"] == pytest.approx(200 / 3)


def test_stemming_matches_inflections() -> None:
    assert rouge.per_example("running", "runs")["rouge1"] == pytest.approx(100.0)


def test_score_is_mean_of_per_example() -> None:
    result = rouge.score(["the cat sat", "x"], ["the cat sat on the mat", "x"])
    assert result["rouge1"] == pytest.approx((200 / 3 + 100) / 2)
    assert result["n"] == 2


def test_bad_lengths_raise() -> None:
    with pytest.raises(ValueError):
        rouge.score(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        rouge.score([], [])
