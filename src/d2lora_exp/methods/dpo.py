"""DPO with an explicit reference policy (`method.reference`).

Given a PeftModel, TRL copies the adapter into a frozen `ref` adapter, so the reference is the
adapter the phase starts from (`init`). For `base`, that copy is removed and TRL then computes
reference log-probs with adapters disabled, i.e. the base model.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError

DATASET_KIND = "preference"
REFERENCES = ("init", "base")


def validate(method_cfg: Any) -> None:
    reference = method_cfg.get("reference", "init")
    if reference not in REFERENCES:
        raise UserError(f"method.reference={reference!r}: use init (the adapter training starts from) or base.")


def make_config(args: dict[str, Any], method_cfg: Any):
    from trl import DPOConfig

    from . import trl_args

    return trl_args(DPOConfig, {"beta": float(method_cfg.beta), **args}, "method=dpo")


def build_trainer(model, tokenizer, dataset, config, method_cfg: Any, callbacks: list):
    from trl import DPOTrainer

    validate(method_cfg)
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)
    has_ref_copy = "ref" in trainer.model.peft_config
    if method_cfg.reference == "base" and has_ref_copy:
        trainer.model.delete_adapter("ref")
        trainer.model.set_adapter("default")
    elif method_cfg.reference == "init" and not has_ref_copy:
        raise RuntimeError("TRL did not create the frozen `ref` adapter copy; method.reference=init cannot be honoured")
    return trainer
