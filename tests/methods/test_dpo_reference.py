"""`method.reference` decides the DPO reference policy: the warm-up adapter (`init`) or the base model."""

from __future__ import annotations

import math

import pytest

from d2lora_exp import recipe

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
