"""ARC-Easy log-likelihood scoring: label mapping on the real data, batching exactness, metrics."""

from __future__ import annotations

import json
import math

import pytest
import torch
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


def test_batched_scores_equal_one_by_one_and_a_direct_computation(tiny):
    model, tok = tiny
    prompts = [arc.prompt_text(tok, q) for q in ["What is ice?", "Which planet is largest in our solar system?"]]
    conts = ["frozen water", "Jupiter", "a very long answer about gas giants and their moons", "x"]
    pairs_p, pairs_c = [prompts[i % 2] for i in range(4)], conts
    model.train()  # scoring must switch to eval and hand the mode back
    batched = arc.choice_logprobs(model, tok, pairs_p, pairs_c, batch_size=8)
    assert model.training
    model.eval()
    single = [arc.choice_logprobs(model, tok, [p], [c], batch_size=1)[0] for p, c in zip(pairs_p, pairs_c)]
    for (a, n), (b, m) in zip(batched, single):
        assert n == m and a == pytest.approx(b, abs=1e-4)
    # By hand: log p of each continuation byte given everything before it.
    p_ids = tok(pairs_p[0], add_special_tokens=False)["input_ids"]
    full = tok(pairs_p[0] + conts[0], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), -1)
    expected = sum(logp[t - 1, full[t]].item() for t in range(len(p_ids), len(full)))
    assert batched[0][0] == pytest.approx(expected, abs=1e-4) and batched[0][1] == len(full) - len(p_ids)
    assert arc.choice_logprobs(model, tok, [pairs_p[0]], [""], batch_size=1) == [(0.0, 0)]


def test_a_taught_answer_scores_higher(tiny, tmp_path):
    model, tok = tiny
    model = AutoModelForCausalLM.from_pretrained(tiny_model.build(tmp_path / "copy"))
    prompt = arc.prompt_text(tok, "What is the capital of France?")
    before = arc.choice_logprobs(model, tok, [prompt, prompt], ["Paris", "Rome"], 2)
    ids = torch.tensor([tok(prompt + "Paris", add_special_tokens=False)["input_ids"]])
    labels = ids.clone()
    labels[0, : len(tok(prompt, add_special_tokens=False)["input_ids"])] = -100  # teach only the answer
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        model(ids, labels=labels).loss.backward()
        opt.step()
    after = arc.choice_logprobs(model, tok, [prompt, prompt], ["Paris", "Rome"], 2)
    assert after[0][0] - after[1][0] > before[0][0] - before[1][0] + 1.0


def test_evaluate_arc_on_real_rows(tiny, arc_test, tmp_path):
    model, tok = tiny
    out = tmp_path / "arc.jsonl"
    metrics = arc.evaluate_arc(model, tok, Dataset.from_list(arc_test[:20]), batch_size=8, out_path=out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert metrics["arc_n"] == 20 and len(lines) == 20
    for metric, suffix in [("arc_acc", ""), ("arc_acc_norm", "_norm"), ("arc_acc_bytes", "_bytes")]:
        assert 0 <= metrics[metric] <= 100
        assert metrics[metric] == pytest.approx(100 * sum(r[f"correct{suffix}"] for r in lines) / 20)
    assert all({"id", "question", "choices", "gold", "pred", "pred_norm", "pred_bytes", "logprobs", "correct", "correct_norm",
                "correct_bytes"} <= set(r) for r in lines)
    for r, row in zip(lines, arc_test[:20]):
        assert (r["id"], r["choices"], r["gold"]) == (row["id"], row["choices"]["text"], row["answerKey"])
        assert r["pred"] in row["choices"]["label"] and r["correct"] == (r["pred"] == r["gold"])
        assert r["correct_norm"] == (r["pred_norm"] == r["gold"]) and r["correct_bytes"] == (r["pred_bytes"] == r["gold"])
    assert all(len(r["logprobs"]) == len(r["choices"]) and all(math.isfinite(x) for x in r["logprobs"]) for r in lines)


def test_norm_divides_by_length(monkeypatch):
    rows = [{"id": "1", "question": "q", "choices": {"text": ["ab", "abcdefghij"], "label": ["A", "B"]}, "answerKey": "B"},
            {"id": "2", "question": "q", "choices": {"text": ["ab", "abcdefghij"], "label": ["A", "B"]}, "answerKey": "A"}]
    # Long choice: -5 total (-0.5/character, ASCII so also per byte); short: -2 (-1). Sum prefers short, norm long.
    # Token counts (1 each) differ from byte counts, so normalising by tokens would not pass.
    monkeypatch.setattr(arc, "choice_logprobs", lambda m, t, p, c, b: [(-2.0, 1), (-5.0, 1)] * 2)
    monkeypatch.setattr(arc, "prompt_text", lambda tok, q: q)
    metrics = arc.evaluate_arc(None, None, Dataset.from_list(rows), batch_size=4)
    assert metrics == {"arc_acc": 50.0, "arc_acc_norm": 50.0, "arc_acc_bytes": 50.0, "arc_n": 2}
    rows[1]["answerKey"] = "B"
    metrics = arc.evaluate_arc(None, None, Dataset.from_list(rows), batch_size=4)
    assert (metrics["arc_acc"], metrics["arc_acc_norm"], metrics["arc_acc_bytes"]) == (0.0, 100.0, 100.0)


def _picks(monkeypatch, tmp_path, choices: list[str], logprobs: list[float]) -> dict[str, str]:
    """The label each normalisation picks for one row whose choices score `logprobs` (summed)."""
    labels = [chr(ord("A") + i) for i in range(len(choices))]
    rows = [{"id": "r", "question": "q", "choices": {"text": choices, "label": labels}, "answerKey": "A"}]
    monkeypatch.setattr(arc, "choice_logprobs", lambda m, t, p, c, b: [(lp, 1) for lp in logprobs])
    monkeypatch.setattr(arc, "prompt_text", lambda tok, q: q)
    out = tmp_path / "p.jsonl"
    arc.evaluate_arc(None, None, Dataset.from_list(rows), batch_size=4, out_path=out)
    line = json.loads(out.read_text())
    return {"acc": line["pred"], "acc_norm": line["pred_norm"], "acc_bytes": line["pred_bytes"]}


def test_norm_divides_by_characters_and_bytes_by_utf8_bytes(monkeypatch, tmp_path):
    """lm-evaluation-harness's acc_norm divides by characters, acc_bytes by UTF-8 bytes: with a multi-byte choice
    the three accuracies pick three different choices. Per character: -1.0, -1.05, -0.967; per byte: -1.0, -0.525,
    -0.967; summed: -2.0 wins."""
    assert _picks(monkeypatch, tmp_path, ["aa", "éé", "abc"], [-2.0, -2.1, -2.9]) == {
        "acc": "A", "acc_norm": "C", "acc_bytes": "B"}


def test_norm_and_bytes_differ_on_a_real_row_with_a_degree_sign(monkeypatch, tmp_path, arc_test):
    """'32°C' is 4 characters but 5 bytes, '100°C' 5 and 6: -4.4 vs -5.4 summed is -1.1 vs -1.08 per character
    (100°C wins) but -0.88 vs -0.9 per byte (32°C wins)."""
    row = next(r for r in arc_test if r["id"] == "Mercury_SC_415535")
    assert row["choices"]["text"][:2] == ["32°C", "100°C"]
    picks = _picks(monkeypatch, tmp_path, row["choices"]["text"], [-4.4, -5.4, -50.0, -50.0])
    assert picks == {"acc": "A", "acc_norm": "B", "acc_bytes": "A"}
