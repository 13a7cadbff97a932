"""`method.reference` decides the DPO reference policy: the warm-up adapter (`init`) or the base model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from d2lora_exp import modeling, recipe
from d2lora_exp.phases import adapt
from d2lora_exp.phases.prepare import prepare

pytestmark = pytest.mark.e2e

# A warm-up strong enough to move the policy away from the base model, so the two references differ.
STRONG_WARMUP = ["init=d2lora", "method=dpo", "warmup.learning_rate=5e-3", "warmup.num_train_epochs=2",
                 "method.beta=1.0"]


def test_reference_init_is_the_warmup_adapter(make_cfg):
    result = recipe.run(make_cfg(*STRONG_WARMUP, "method.reference=init"))
    # Policy == reference at step 0, so the DPO loss is exactly ln 2 and the rewards are zero.
    assert result["adapt"]["first_loss"] == pytest.approx(math.log(2), abs=1e-5)
    first = result["adapt"]["log_history"][0]
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert result["dpo_reference"] == "init"


def test_reference_base_is_the_model_without_adapters(make_cfg):
    result = recipe.run(make_cfg(*STRONG_WARMUP, "method.reference=base"))
    # The warm-up adapter differs from the base model, so the step-0 rewards are not zero.
    first = result["adapt"]["log_history"][0]
    assert abs(first["rewards/chosen"]) > 1e-3
    assert result["adapt"]["first_loss"] != pytest.approx(math.log(2), abs=1e-4)
    assert result["dpo_reference"] == "base"


def test_reference_setting_is_irrelevant_for_fresh_lora(make_cfg):
    """With a fresh adapter (B = 0) the init and the base are the same policy."""
    result = recipe.run(make_cfg("init=lora", "method=dpo", "method.reference=base"))
    assert result["adapt"]["first_loss"] == pytest.approx(math.log(2), abs=1e-5)


def _warmed_up_trainer(make_cfg, tmp_path, reference: str, precompute: str = "auto"):
    """The adaptation's DPO trainer on a start adapter that is far from the base model (a random B stands for a
    trained warm-up adapter, so that `init` and `base` are different references)."""
    cfg = make_cfg("method=dpo", f"method.reference={reference}", f"method.precompute_ref={precompute}")
    plan = prepare(cfg, tmp_path / f"run-{reference}")
    model = modeling.load_model(plan.model_source, cfg.model, plan.device, plan.dtype)
    model, _ = adapt.start_adapter(plan, model, None)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return plan, plan.method.build_trainer(model, plan.tokenizer, plan.train_rows, plan.adapt_config, cfg.method, [])


def _direct_logps(model, rows, answer: str) -> list[float]:
    """Sum of log p(answer tokens | prompt) of each row, one unpadded forward pass per row, by hand."""
    out = []
    with torch.no_grad():
        for row in rows:
            ids = row["prompt_ids"] + row[f"{answer}_ids"]
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
            out.append(sum(logp[t - 1, ids[t]].item() for t in range(len(row["prompt_ids"]), len(ids))))
    return out


@pytest.mark.parametrize("reference", ["init", "base"])
def test_precomputed_reference_logprobs_are_the_configured_reference(make_cfg, tmp_path, reference):
    """By default (method.precompute_ref=auto) the reference log-probs are computed before training, and they are the
    configured reference's: the starting adapter's for init, the base model's (adapters off) for base. TRL alone
    would have computed the starting adapter's for base too (its `ref` copy exists while it precomputes)."""
    plan, trainer = _warmed_up_trainer(make_cfg, tmp_path, reference)
    assert plan.adapt_config.precompute_ref_log_probs and trainer.precompute_ref_logps
    rows = trainer.train_dataset
    model = trainer.model
    model.eval()
    with_adapter = {a: _direct_logps(model, rows, a) for a in ("chosen", "rejected")}
    with model.disable_adapter():
        without = {a: _direct_logps(model, rows, a) for a in ("chosen", "rejected")}
    right, wrong = (with_adapter, without) if reference == "init" else (without, with_adapter)
    for answer in ("chosen", "rejected"):
        assert rows[f"ref_{answer}_logps"] == pytest.approx(right[answer], abs=1e-4)
        assert max(abs(a - b) for a, b in zip(right[answer], wrong[answer])) > 0.1  # the two references differ


@pytest.mark.parametrize("reference", ["init", "base"])
def test_precomputed_reference_trains_the_adapter_the_every_step_reference_does(make_cfg, reference):
    """After a real D2LoRA warm-up, DPO with the precomputed reference (the default) and with a reference pass at
    every step (method.precompute_ref=false) train the same adapter. Tolerance: 1% of the largest change training made
    to any weight (float32; the two runs pass the rows through the reference in different batches, padded
    differently). Measured (2 steps at lr 1e-3, weights moved up to 1.5e-3): max |Δ| = 2.4e-6 for base; the
    starting adapter's log-probs used as base's (what TRL alone precomputes) give 3.0e-3."""
    from safetensors.torch import load_file

    adapter = "adapter_model.safetensors"
    runs = {}
    for precompute in ("auto", "false"):
        cfg = make_cfg(*STRONG_WARMUP, f"method.reference={reference}", f"method.precompute_ref={precompute}",
                       "method.learning_rate=1e-3", out=f"run-{precompute}")
        result = recipe.run(cfg)
        runs[precompute] = result, load_file(Path(cfg.paths.output_dir) / "adapter" / adapter)
    (pre_result, pre), (every_result, every) = runs["auto"], runs["false"]
    assert pre_result["adapt"]["first_loss"] == pytest.approx(every_result["adapt"]["first_loss"], abs=1e-4)
    start = load_file(Path(pre_result["warmup"]["adapter"]) / adapter)
    assert pre.keys() == every.keys() == start.keys() and pre
    moved = max((every[k] - start[k]).abs().max().item() for k in every)
    assert moved > 1e-4  # training changed the adapter, so equal adapters mean equal training
    assert max((pre[k] - every[k]).abs().max().item() for k in every) <= 0.01 * moved


def test_precompute_is_off_with_several_processes_and_true_is_refused_there(monkeypatch):
    """TRL 1.16 shares precomputed log-probs through a cache file beside the dataset, which in-memory rows keep in a
    per-process temporary directory: with several processes the other ranks fail to read it (and the job hangs)."""
    from omegaconf import OmegaConf

    from d2lora_exp.errors import UserError
    from d2lora_exp.methods import dpo

    auto = OmegaConf.create({"reference": "init", "precompute_ref": "auto", "args": {}})
    assert dpo.precompute_ref(auto) is True
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert dpo.precompute_ref(auto) is False
    with pytest.raises(UserError, match="precompute_ref=true with 2 processes"):
        dpo.validate(OmegaConf.create({"reference": "init", "precompute_ref": True, "args": {}}))
