"""ORPO (reference-free): odds-ratio preference loss plus SFT loss on the chosen answer."""

from __future__ import annotations

import os
from typing import Any

DATASET_KIND = "preference"


def validate(method_cfg: Any) -> None:
    """Nothing beyond the TRL config's own checks."""


def make_config(args: dict[str, Any], method_cfg: Any):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.orpo import ORPOConfig

    from . import trl_args

    return trl_args(ORPOConfig, {"beta": float(method_cfg.beta), **args}, "method=orpo")


def build_trainer(model, tokenizer, dataset, config, method_cfg: Any, callbacks: list):
    from trl.experimental.orpo import ORPOTrainer

    return ORPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)
