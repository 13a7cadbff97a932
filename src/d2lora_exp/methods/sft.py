"""Supervised fine-tuning on prompt/completion text rows; loss on the completion only."""

from __future__ import annotations

from typing import Any

DATASET_KIND = "sft"


def validate(method_cfg: Any) -> None:
    """Nothing beyond the TRL config's own checks."""


def make_config(args: dict[str, Any], method_cfg: Any):
    from trl import SFTConfig

    from . import trl_args

    values = {"completion_only_loss": True, **args}
    if values.get("padding_free"):  # TRL enforces no max_length then: training.fit_rows has (train.overlong)
        values["max_length"] = None
    return trl_args(SFTConfig, values, "method=sft")


def build_trainer(model, tokenizer, dataset, config, method_cfg: Any, callbacks: list):
    from trl import SFTTrainer

    return SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)
