"""How fresh LoRA matrices are initialised (`init.base`), alone or as the start of the D2LoRA warm-up.

PEFT's initialisations are one config switch each, but three facts decide how the rest of the chain
must treat them:
- pissa, olora and corda rewrite the base weights (W <- W - BA), so "adapters off" is no longer the
  original model and the adapter does not apply to a clean base. The adapter is therefore saved converted
  (PEFT's path_initial_model_for_weight_conversion: a rank-2r LoRA relative to the original weights), and
  after a warm-up the original base is reloaded before adaptation.
- eva and corda need calibration activations before training: by default from the warm-up data.
- every init is seeded here, since TRL applies its seed only after the adapter exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from peft import EvaConfig, LoraConfig, PeftModel, get_peft_model, initialize_lora_eva_weights
from transformers import set_seed

from . import dist
from .adapters import ADAPTER_NAME, lora_config
from .errors import UserError

PEFT_INIT = {"default": True, "gaussian": "gaussian", "pissa": "pissa_niter_4", "olora": "olora", "eva": "eva",
             "corda": "corda"}
REWRITES_BASE = {"pissa", "olora", "corda"}
NEEDS_CALIBRATION = {"eva", "corda"}


def validate(init_cfg: Any, method_cfg: Any) -> None:
    base = init_cfg.get("base", "default")
    if base not in PEFT_INIT:
        raise UserError(f"init.base={base!r}: choose one of {sorted(PEFT_INIT)}.")
    if (base in REWRITES_BASE and not init_cfg.warmup and method_cfg.name == "dpo"
            and method_cfg.get("reference") == "base"):
        raise UserError(
            f"init.base={base} rewrites the base weights, so 'adapters off' is not the original model and "
            "method.reference=base would compare against the wrong policy. Use method.reference=init (at step 0 "
            f"a fresh {base} adapter reproduces the original model exactly), or add the warm-up (init.warmup=true), "
            "after which the original base is reloaded.")


def create(model, lora_cfg: Any, base: str, seed: int, calibration: Iterable[dict] | None,
           initial_dir: Path | None) -> PeftModel:
    """Fresh adapter on `model` with the chosen init; for base-rewriting inits, its initial state is saved to
    `initial_dir` so the trained adapter can later be saved relative to the original weights."""
    config: LoraConfig = lora_config(lora_cfg)
    config.init_lora_weights = PEFT_INIT[base]
    set_seed(seed)
    if base in NEEDS_CALIBRATION and calibration is None:
        raise UserError(f"init.base={base} needs calibration data (init.calibration); none was given.")
    if base == "corda":
        from peft.tuners.lora.config import CordaConfig
        from peft.tuners.lora.corda import preprocess_corda

        config.corda_config = CordaConfig(corda_method="ipm")
        if config.target_modules == "all-linear" or config.target_modules == {"all-linear"}:
            # preprocess_corda hooks modules by name and does not expand PEFT's "all-linear" shorthand
            config.target_modules = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                                            if isinstance(module, torch.nn.Linear) and "lm_head" not in name})
        batches = list(calibration)

        @torch.no_grad()
        def run_model() -> None:  # CorDA's hooks take one unpadded sequence per forward pass
            for batch in batches:
                for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
                    model(input_ids=ids[mask.bool()].unsqueeze(0))

        preprocess_corda(model, config, run_model=run_model)
    if base == "eva":
        config.eva_config = EvaConfig(rho=2.0)
        peft_model = get_peft_model(model, config, adapter_name=ADAPTER_NAME, low_cpu_mem_usage=True)
        initialize_lora_eva_weights(peft_model, list(calibration), adapter_name=ADAPTER_NAME, show_progress_bar=False)
    else:
        peft_model = get_peft_model(model, config, adapter_name=ADAPTER_NAME)
    if base in REWRITES_BASE:
        if initial_dir is None:
            raise ValueError(f"{base} rewrites the base weights: an initial_dir is needed to save it convertibly")
        # PEFT's recipe: store the initial adapter flagged as a plain LoRA init, for the later conversion.
        # Written by the main rank alone (every rank computed the same init), read by it alone (adapters.save).
        peft_model.peft_config[ADAPTER_NAME].init_lora_weights = True
        if dist.is_main():
            peft_model.save_pretrained(str(initial_dir), selected_adapters=[ADAPTER_NAME])
        peft_model.peft_config[ADAPTER_NAME].init_lora_weights = PEFT_INIT[base]
    return peft_model


def calibration_batches(tokenizer, texts: list[str], batch_size: int, max_length: int, device: str) -> list[dict]:
    """Tokenised calibration inputs for eva/corda (right-padded, with attention masks and labels)."""
    batches = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i : i + batch_size], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length, add_special_tokens=False)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        batches.append({**{k: v.to(device) for k, v in enc.items()}, "labels": labels.to(device)})
    return batches
