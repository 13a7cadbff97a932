"""Batched greedy generation (left padding) gives exactly what one-by-one generation gives."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from d2lora_exp import chat, tiny_model
from d2lora_exp.evaluation import generation


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
