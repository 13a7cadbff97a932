"""DPO with an explicit reference policy (`method.reference`), its log-probs computed once before training.

Given a PeftModel, TRL copies the adapter into a frozen `ref` adapter, so the reference is the
adapter the phase starts from (`init`). For `base`, that copy is removed and TRL then computes
reference log-probs with adapters disabled, i.e. the base model.

Either reference is fixed, so its log-probs are the same numbers at every step: `method.precompute_ref`
(auto: on) computes them in one pass over the rows before training (TRL `precompute_ref_log_probs`) instead of a
second forward pass of every batch at every step. TRL precomputes inside its constructor, while the `ref` copy still
exists, which for `base` would be the starting adapter's log-probs (wrong after a D2LoRA warm-up): for `base` they
are computed here, once the copy is removed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import UserError

DATASET_KIND = "preference"
REFERENCES = ("init", "base")


def validate(method_cfg: Any) -> None:
    reference = method_cfg.get("reference", "init")
    if reference not in REFERENCES:
        raise UserError(f"method.reference={reference!r}: use init (the adapter training starts from) or base.")
    args = method_cfg.get("args") or {}
    if "precompute_ref_log_probs" in args:
        raise UserError("method.args sets precompute_ref_log_probs: use method.precompute_ref=auto|true|false instead "
                        "(the project computes them against method.reference, which TRL alone gets wrong for base).")
    from .. import dist

    if method_cfg.get("precompute_ref", "auto") is True and dist.active():
        raise UserError(f"method.precompute_ref=true with {dist.world_size()} processes: TRL 1.16 cannot share the "
                        "precomputed log-probs of in-memory rows across processes; use method.precompute_ref=auto "
                        "(off with several processes) or false.")
    if method_cfg.get("precompute_ref", "auto") is True and args.get("sync_ref_model"):
        raise UserError("method.precompute_ref=true with method.args.sync_ref_model=true: a reference that moves "
                        "cannot be precomputed; set method.precompute_ref=auto or false.")


def precompute_ref(method_cfg: Any) -> bool:
    """`method.precompute_ref`: auto = on whenever the reference is fixed (always, unless TRL is told to sync it) and
    the run has one process.

    With several processes TRL 1.16 writes the precomputed log-probs from rank 0 into a cache file next to the
    dataset and every rank reads it back; this project's rows are in-memory datasets, whose cache path is a temporary
    directory of each process's own, so the other ranks fail to find the file (found by the 2-process tests)."""
    from .. import dist

    setting = method_cfg.get("precompute_ref", "auto")
    if setting == "auto":
        return not (method_cfg.get("args") or {}).get("sync_ref_model", False) and not dist.active()
    return bool(setting)


def make_config(args: dict[str, Any], method_cfg: Any):
    from trl import DPOConfig

    from . import trl_args

    validate(method_cfg)
    values = {"beta": float(method_cfg.beta), **args, "precompute_ref_log_probs": precompute_ref(method_cfg)}
    return trl_args(DPOConfig, values, "method=dpo")


def build_trainer(model, tokenizer, dataset, config, method_cfg: Any, callbacks: list):
    from trl import DPOTrainer

    validate(method_cfg)
    base, precompute = method_cfg.reference == "base", bool(config.precompute_ref_log_probs)
    if base and precompute:  # TRL would precompute against the `ref` copy (the starting adapter): done below instead
        config = dataclasses.replace(config, precompute_ref_log_probs=False)
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)
    has_ref_copy = "ref" in trainer.model.peft_config
    if base and has_ref_copy:
        trainer.model.delete_adapter("ref")
        trainer.model.set_adapter("default")
    elif method_cfg.reference == "init" and not has_ref_copy:
        raise RuntimeError("TRL did not create the frozen `ref` adapter copy; method.reference=init cannot be honoured")
    if base and precompute:
        _precompute_base_reference(trainer)
    return trainer


def _precompute_base_reference(trainer) -> None:
    """What TRL's constructor does with `precompute_ref_log_probs=True`, now that the `ref` copy is gone (its reference
    pass then runs with adapters disabled: the base model). The model hash keys TRL's cache of the log-probs, so it is
    taken without the copy: a cached `init` result (model with the copy) can never be read back for `base`."""
    from trl.trainer.utils import hash_module

    trainer.args.precompute_ref_log_probs = True
    trainer.precompute_ref_logps = True
    trainer._precompute_model_hash = hash_module(trainer.model)
    batch_size = trainer.args.precompute_ref_batch_size or trainer.args.per_device_train_batch_size
    trainer.train_dataset = trainer._precompute_ref_logps(trainer.train_dataset, "train", batch_size)
