"""Training cost per phase (metrics.json `cost`): real tokens, FLOPs by the stated formula, seconds."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from d2lora_exp import cost, recipe, training
from d2lora_exp.phases.prepare import prepare


def test_flops_per_token_follow_the_formula():
    params = {"linear": 1000, "trainable": 10}
    assert cost.per_token(params) == 4 * 1000 + 2 * 10
    assert cost.per_token(params, recompute=True) == 6 * 1000 + 2 * 10  # gradient checkpointing: one more forward
    assert cost.per_token(params, reference_passes=1.0) == 6 * 1000 + 2 * 10  # DPO's reference forward
    sft, dpo = SimpleNamespace(num_train_epochs=3), SimpleNamespace(num_train_epochs=3, precompute_ref_log_probs=False)
    assert cost.reference_passes(sft) == 0.0 and cost.reference_passes(dpo) == 1.0
    assert cost.reference_passes(SimpleNamespace(num_train_epochs=4, precompute_ref_log_probs=True)) == 0.25
    found = cost.phase_flops(_Linear(), SimpleNamespace(gradient_checkpointing=False), {"non_padding": 7, "positions": 9})
    assert found["params"] == {"linear": 12, "trainable": 12}
    assert (found["flops"], found["flops_with_padding"]) == (7 * 72, 9 * 72)
    assert cost.phase_flops(_Linear(), SimpleNamespace(), {"non_padding": None, "positions": None})["flops"] is None


def _Linear():
    import torch

    model = torch.nn.Sequential(torch.nn.Embedding(100, 3), torch.nn.Linear(3, 4, bias=False))  # a lookup is no matmul
    model[0].requires_grad_(False)
    return model


def _by_hand(model_cfg, r: int) -> tuple[int, int]:
    """N and N_t of a Llama with LoRA on every linear layer but the head, from its dimensions alone."""
    d, ff, layers, vocab = model_cfg.hidden_size, model_cfg.intermediate_size, model_cfg.num_hidden_layers, model_cfg.vocab_size
    kv = d // model_cfg.num_attention_heads * model_cfg.num_key_value_heads
    shapes = [(d, d), (d, kv), (d, kv), (d, d), (d, ff), (d, ff), (ff, d)]  # q k v o gate up down: (in, out)
    lora = layers * sum(r * (i + o) for i, o in shapes)
    return layers * sum(i * o for i, o in shapes) + vocab * d + lora, lora


@pytest.mark.e2e
def test_a_run_records_real_tokens_times_epochs_and_flops_by_the_formula(make_cfg):
    cfg = make_cfg("init=d2lora", "method=sft", "method.num_train_epochs=2")
    result = recipe.run(cfg)
    plan = prepare(cfg, Path(cfg.paths.output_dir) / "check")
    spent = result["cost"]
    for phase, rows, epochs in (("adapt", plan.train_rows, 2), ("warmup", plan.warmup.rows, 1)):
        prompts, answers = training.token_lengths(rows, plan.tokenizer)
        assert spent[phase]["tokens"] == (sum(prompts) + sum(answers)) * epochs > 0
    from transformers import AutoConfig

    n, n_t = _by_hand(AutoConfig.from_pretrained(cfg.model.name_or_path), int(cfg.lora.r))
    assert result["adapt"]["flops"]["params"] == {"linear": n, "trainable": n_t}
    assert spent["adapt"]["flops"] == spent["adapt"]["tokens"] * (4 * n + 2 * n_t)
    assert spent["adapt"]["flops_with_padding"] == spent["adapt"]["positions"] * (4 * n + 2 * n_t)
    assert spent["warmup"]["flops"] == spent["warmup"]["tokens"] * (4 * n + 2 * n_t)
    # Training seconds of every attempt (one here), carried over a resume like the tokens (test_resume_after_kill).
    assert spent["adapt"]["seconds"] == result["adapt"]["seconds_all_attempts"] > 0 and spent["eval"]["seconds"] > 0
    assert spent["warmup"]["reused"] is False and spent["warmup"]["seconds"] > 0 and "N_t" in spent["formula"]

    # A run that reuses the cached warm-up shows the cost of the job that built it, and says it reused it.
    again = recipe.run(make_cfg("init=d2lora", "method=sft", "data_size=0", out="again"))
    reused = json.loads((Path(cfg.paths.output_dir).parent / "again" / "metrics.json").read_text())["cost"]
    assert reused == json.loads(json.dumps(again["cost"]))
    assert reused["warmup"] == {**spent["warmup"], "reused": True} and reused["adapt"] is None  # n=0 trains nothing


@pytest.mark.e2e
def test_dpo_counts_the_reference_forward_and_orpo_does_not(make_cfg):
    for method, extra_forwards in (("dpo", 1), ("orpo", 0)):
        result = recipe.run(make_cfg("init=lora", f"method={method}", out=method))
        flops = result["adapt"]["flops"]
        n, n_t = flops["params"]["linear"], flops["params"]["trainable"]
        assert flops["per_token"] == (4 + 2 * extra_forwards) * n + 2 * n_t
        assert result["cost"]["adapt"]["flops"] == flops["per_token"] * result["cost"]["adapt"]["tokens"] > 0
