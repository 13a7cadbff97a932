"""ARC-Easy log-likelihood scoring: label mapping on the real data, batching exactness, metrics."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from d2lora_exp import tiny_model
from d2lora_exp.errors import UserError
from d2lora_exp.evaluation import arc


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tiny_model.build(tmp_path_factory.mktemp("m") / "tiny")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def arc_test(real_data) -> list[dict]:
    path = real_data("arc_easy/test.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_gold_index_on_every_real_row(arc_test):
    assert len(arc_test) == 2376
    golds = [arc.gold_index(r) for r in arc_test]
    assert all(0 <= g < len(r["choices"]["label"]) for g, r in zip(golds, arc_test))
    numeric = [r for r in arc_test if r["answerKey"].isdigit()]
    assert numeric and all(r["choices"]["label"][arc.gold_index(r)] == r["answerKey"] for r in numeric)
    assert {len(r["choices"]["label"]) for r in arc_test} >= {3, 4, 5}


def test_gold_index_rejects_a_key_not_among_the_labels():
    with pytest.raises(UserError, match="answerKey 'E' is not among labels"):
        arc.gold_index({"id": "x", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"})


def _picks(scripted_engine, scripted_lm, tmp_path, choices: list[str], logprobs: list[float]) -> dict[str, int]:
    """Which choice each accuracy credits for one row whose choices score `logprobs` (summed), through the shipped
    harness task: the row's gold is each choice in turn, so a metric credits exactly the choice it picks."""
    labels = [chr(ord("A") + i) for i in range(len(choices))]
    rows = [{"id": f"r{i}", "question": "q", "choices": {"text": choices, "label": labels}, "answerKey": label}
            for i, label in enumerate(labels)]
    by_choice = dict(zip(choices, logprobs, strict=True))
    ev = object.__new__(arc.ArcEasy)
    ev.rows, ev.data = Dataset.from_list(rows), {}
    metrics = ev.evaluate_with(scripted_engine(scripted_lm(logprob=lambda ctx, cont: by_choice[cont])), tmp_path)
    lines = [json.loads(line) for line in ev.predictions_path(tmp_path).read_text().splitlines()]
    assert metrics["arc_n"] == len(choices) and all(r["logprobs"] == logprobs for r in lines)
    return {m: next(i for i, r in enumerate(lines) if r[m] == 1.0) for m in ("acc", "acc_norm", "acc_bytes")}


def test_the_shipped_task_prompts_the_question_and_scores_each_choice_as_the_reply(scripted_engine, scripted_lm, arc_test,
                                                                                  tmp_path):
    """The chat turn is `<question>\nAnswer:` and each choice is the assistant's reply, with nothing between them
    (target_delimiter ""): the same strings the project trains and evaluates with."""
    lm = scripted_lm(logprob=lambda ctx, cont: -float(len(cont)))
    ev = object.__new__(arc.ArcEasy)
    ev.rows, ev.data = Dataset.from_list(arc_test[:5]), {}
    metrics = ev.evaluate_with(scripted_engine(lm), tmp_path)
    assert lm.contexts[0] == f"<user>{arc_test[0]['question']}\nAnswer:<assistant>"
    assert metrics["arc_n"] == 5 and set(metrics) == {"arc_acc", "arc_acc_norm", "arc_acc_bytes", "arc_n"}
    lines = [json.loads(line) for line in ev.predictions_path(tmp_path).read_text().splitlines()]
    assert [r["id"] for r in lines] == [r["id"] for r in arc_test[:5]]
    shortest = [min(range(len(r["choices"]["text"])), key=lambda i, r=r: len(r["choices"]["text"][i])) for r in arc_test[:5]]
    assert metrics["arc_acc"] == pytest.approx(100 * sum(s == arc.gold_index(r) for s, r in zip(shortest, arc_test)) / 5)


def test_norm_divides_by_characters_and_bytes_by_utf8_bytes(scripted_engine, scripted_lm, tmp_path):
    """lm-evaluation-harness's acc_norm divides by characters, acc_bytes by UTF-8 bytes: with a multi-byte choice
    the three accuracies pick three different choices. Per character: -1.0, -1.05, -0.967; per byte: -1.0, -0.525,
    -0.967; summed: -2.0 wins."""
    assert _picks(scripted_engine, scripted_lm, tmp_path, ["aa", "éé", "abc"], [-2.0, -2.1, -2.9]) == {
        "acc": 0, "acc_norm": 2, "acc_bytes": 1}


def test_norm_and_bytes_differ_on_a_real_row_with_a_degree_sign(scripted_engine, scripted_lm, tmp_path, arc_test):
    """'32°C' is 4 characters but 5 bytes, '100°C' 5 and 6: -4.4 vs -5.4 summed is -1.1 vs -1.08 per character
    (100°C wins) but -0.88 vs -0.9 per byte (32°C wins)."""
    row = next(r for r in arc_test if r["id"] == "Mercury_SC_415535")
    assert row["choices"]["text"][:2] == ["32°C", "100°C"]
    picks = _picks(scripted_engine, scripted_lm, tmp_path, row["choices"]["text"], [-4.4, -5.4, -50.0, -50.0])
    assert picks == {"acc": 0, "acc_norm": 1, "acc_bytes": 0}
