"""Batched greedy generation (left padding) gives exactly what one-by-one generation gives."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from d2lora_exp import chat, tiny_model
from d2lora_exp.data import build as data_build
from d2lora_exp.evaluation import generation
from d2lora_exp.evaluation.chat import ChatBehaviour


def test_batched_equals_one_by_one_and_keeps_input_order(tmp_path):
    path = tiny_model.build(tmp_path / "tiny")
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    # A random model with tied embeddings just repeats its last input token; an untied random head gives
    # varied greedy outputs, so the comparison below really checks order and padding.
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight))
    questions = ["2+2?", "What is the capital of a country with a very long name, please?", "Hi", "Count to ten."]
    prompts = [chat.user_prompt(tok, q) for q in questions]
    batched = generation.generate(model, tok, prompts, batch_size=4, max_new_tokens=12)
    single = [generation.generate(model, tok, [p], batch_size=1, max_new_tokens=12)[0] for p in prompts]
    assert batched == single
    assert len(set(single)) > 1  # different prompts, different outputs: order is really checked
    assert tok.padding_side == "right"  # generate pads left for itself and restores the tokenizer


def test_stopped_flags_say_which_replies_closed_with_eos(tmp_path):
    path = tiny_model.build(tmp_path / "tiny")
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    prompts = [chat.user_prompt(tok, q) for q in ["a", "bb", "ccc"]]
    # Make EOS the only likely token after "b": the second prompt ends in "|>" like the others, so bias
    # the head on the EOS row for every input instead, then check an unbiased model never stops.
    stopped: list[bool] = []
    generation.generate(model, tok, prompts, batch_size=2, max_new_tokens=4, stopped=stopped)
    assert stopped == [False, False, False]  # the random tiny model repeats its last token, never EOS
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.clone())
        model.lm_head.weight[tok.eos_token_id] = model.lm_head.weight[tok.eos_token_id] * 0 + 10
    generation.generate(model, tok, prompts, batch_size=2, max_new_tokens=4, stopped=stopped)
    assert len(stopped) == 3 and all(stopped)


# (the end tokens the model's generation config lists, the one the model ends its reply with)
END_TOKEN_CASES = [
    pytest.param(["<|eot|>", "<|system|>"], "<|system|>", id="second-listed-end-token"),  # Llama-3.1's <|eom_id|>
    pytest.param(["<|system|>"], "<|eot|>", id="tokenizer-eos-not-listed"),
]


@pytest.mark.parametrize("listed, emitted", END_TOKEN_CASES)
def test_generation_and_chat_stop_at_every_end_token(second_end_token_model, make_cfg, tmp_path, listed, emitted):
    """A reply ended by any end token (the generation config's or the tokenizer's EOS) is cut there and counts as
    stopped in chat_stop; the control shows the scripted model would otherwise run on to max_new_tokens."""
    model, tok = second_end_token_model(listed, emitted)
    # The last prompt is no chat turn: the script never ends it, so its batch runs on after the others have ended.
    prompts = [chat.user_prompt(tok, q) for q in ["a", "bb", "ccc"]] + ["zzz"]
    stopped: list[bool] = []
    replies = generation.generate(model, tok, prompts, batch_size=2, max_new_tokens=8, stopped=stopped)
    assert replies == ["OK"] * 3 + ["X" * 8] and stopped == [True] * 3 + [False]

    cfg = make_cfg("eval.evaluators=[chat]")
    data_build.ensure(cfg.data)
    evaluator = ChatBehaviour(cfg, None)
    metrics = evaluator.evaluate(model, tok, tmp_path)
    assert metrics["chat_stop"] == 100.0 and metrics["chat_n"] == 4
    rows = [json.loads(line) for line in evaluator.predictions_path(tmp_path).read_text().splitlines()]
    assert [r["output"] for r in rows] == ["OK"] * 4 and all(r["stopped"] for r in rows)

    control, tok = second_end_token_model(["<|pad|>"], "<|system|>")  # the emitted token is no end token
    assert generation.generate(control, tok, prompts[:1], 1, 8, stopped=stopped) == ["OK" + "X" * 5]
    assert stopped == [False]


def test_split_generation_stops_only_where_the_ranks_agree(tmp_path, monkeypatch):
    """Under several ranks a batch runs once the ranks agreed not to stop: a signal arriving after that agreement must
    not stop this rank alone inside the batch (the others would wait in the next agreement's collective forever)."""
    from d2lora_exp import dist, interrupt
    from d2lora_exp.evaluation import ranks

    path = tiny_model.build(tmp_path / "tiny")
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    prompts = [chat.user_prompt(tok, q) for q in ("one", "two", "three")]

    def signal_arrived(where: str) -> None:  # this rank's own flag, set after the agreement
        raise interrupt.Interrupted(15, where)

    monkeypatch.setattr(interrupt, "check", signal_arrived)
    with pytest.raises(interrupt.Interrupted):  # one process: the generation's own check stops it
        generation.generate(model, tok, prompts, 2, 4)
    agreed: list[str] = []
    monkeypatch.setattr(dist, "active", lambda: True)
    monkeypatch.setattr(dist, "all_max", lambda values: values)
    monkeypatch.setattr(dist, "check_interrupt", agreed.append)
    replies = ranks.generate(model, tok, prompts, 2, 4, "eval")
    assert len(replies) == 3 and agreed == ["during evaluation"] * 2  # stopped only where all ranks agree
