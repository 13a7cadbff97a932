"""PEFT initialisations alone and under the warm-up: exactness at init, save/reload of base-rewriting inits,
calibration-driven inits, and their use through the recipe."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, AutoTokenizer

from d2lora_exp import adapters, inits, recipe, tiny_model
from d2lora_exp.config import init_label
from d2lora_exp.errors import UserError

LORA = OmegaConf.create({"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"})


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny_model.build(tmp_path_factory.mktemp("m") / "tiny")


def _model(path):
    return AutoModelForCausalLM.from_pretrained(path).eval()


def _calibration(path, n=6):
    tok = AutoTokenizer.from_pretrained(path)
    texts = [f"<|user|>What is {i} plus {i + 2}?<|eot|><|assistant|>{2 * i + 2}" for i in range(n)]
    return inits.calibration_batches(tok, texts, batch_size=3, max_length=64, device="cpu")


IDS = torch.tensor([[256, 260, 40, 41, 42, 43, 257, 261, 50, 51]])


@pytest.mark.parametrize("base", ["pissa", "olora", "corda"])
def test_base_rewriting_inits_reproduce_the_model_and_reload_exactly_after_training(tiny_path, tmp_path, base):
    original = _model(tiny_path)(IDS).logits
    peft_model = inits.create(_model(tiny_path), LORA, base, seed=0, calibration=_calibration(tiny_path),
                              initial_dir=tmp_path / "initial")
    with torch.no_grad():  # residual base + fresh adapter == the original model
        assert torch.allclose(peft_model(IDS).logits, original, atol=1e-4)
    opt = torch.optim.Adam([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        peft_model(input_ids=IDS, labels=IDS).loss.backward()
        opt.step()
    peft_model.eval()
    with torch.no_grad():
        trained = peft_model(IDS).logits
    assert not torch.allclose(trained, original, atol=1e-3)
    adapters.save(peft_model, tmp_path / "adapter", initial_dir=tmp_path / "initial")
    # The converted adapter applies to the ORIGINAL weights (a fresh model), not to the residual.
    reloaded = adapters.load_frozen(_model(tiny_path), tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(IDS).logits, trained, atol=1e-4)


def test_eva_takes_its_directions_from_the_calibration_data(tiny_path):
    def lora_a(calibration):
        m = inits.create(_model(tiny_path), LORA, "eva", seed=0, calibration=calibration, initial_dir=None)
        return torch.cat([p.detach().flatten() for n, p in m.named_parameters() if "lora_A" in n])

    default = inits.create(_model(tiny_path), LORA, "default", seed=0, calibration=None, initial_dir=None)
    default_a = torch.cat([p.detach().flatten() for n, p in default.named_parameters() if "lora_A" in n])
    def differs(x, y):  # EVA redistributes ranks across layers (rho), so shapes may differ too
        return x.shape != y.shape or not torch.allclose(x, y)

    a1, a2 = lora_a(_calibration(tiny_path, 6)), lora_a(_calibration(tiny_path, 6))
    assert torch.equal(a1, a2)  # deterministic
    assert differs(a1, default_a)
    tok = AutoTokenizer.from_pretrained(tiny_path)
    other = inits.calibration_batches(tok, [f"zz {i} qq {i * 7}" * 3 for i in range(6)], 3, 64, "cpu")
    assert differs(a1, lora_a(other))


def test_inits_needing_calibration_refuse_to_run_without_it(tiny_path):
    with pytest.raises(UserError, match="needs calibration"):
        inits.create(_model(tiny_path), LORA, "eva", seed=0, calibration=None, initial_dir=None)


def test_labels():
    assert [init_label(b, w) for b, w in [("default", False), ("default", True), ("pissa", False), ("pissa", True)]] == \
        ["lora", "d2lora", "pissa", "d2lora+pissa"]


def test_validate_refuses_base_reference_on_a_residual_base():
    dpo = OmegaConf.create({"name": "dpo", "reference": "base"})
    with pytest.raises(UserError, match="rewrites the base weights"):
        inits.validate(OmegaConf.create({"base": "olora", "warmup": False}), dpo)
    inits.validate(OmegaConf.create({"base": "olora", "warmup": True}), dpo)  # original base reloaded
    with pytest.raises(UserError, match="init.base='svd'"):
        inits.validate(OmegaConf.create({"base": "svd", "warmup": False}), dpo)


@pytest.mark.e2e
def test_calibration_data_is_configurable(make_cfg, tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(UserError, match="nope.jsonl does not exist"):
        recipe.run(make_cfg("init=eva", f"calibration.data={{path:{missing}}}"))
    assert recipe.run(make_cfg("init=eva", "calibration.rows=4"))["status"] == "complete"


@pytest.mark.e2e
@pytest.mark.parametrize("base", ["pissa", "eva"])
def test_d2lora_composed_with_an_init_runs_end_to_end(make_cfg, base):
    result = recipe.run(make_cfg(f"init={base}", "init.warmup=true", "method=dpo", "method.reference=base"))
    assert result["status"] == "complete" and result["init"] == f"d2lora+{base}"
    assert result["init_base"] == base and result["dpo_reference"] == "base"
    # Adaptation started from the (converted) warm-up adapter as saved in the cache.
    assert result["adapt"]["start"]["digest"] == adapters.file_digest(result["warmup"]["adapter"])
