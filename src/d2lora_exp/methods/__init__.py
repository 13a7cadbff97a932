"""Training methods (`method=sft|dpo|orpo`): each module turns a config into a ready TRL trainer.

All methods receive an already-built PeftModel (fresh LoRA or the warm-up adapter) and never a
peft_config, so the adapter a phase starts from is decided in one place: the adaptation phase (phases/adapt.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import UserError
from . import dpo, orpo, sft

METHODS = {"sft": sft, "dpo": dpo, "orpo": orpo}


def get_method(name: str):
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose one of {sorted(METHODS)}.")
    return METHODS[name]


def trl_args(config_cls, values: dict[str, Any], what: str):
    """Build a TRL config, rejecting keys it does not have (a typo would otherwise be ignored silently)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise UserError(f"{what}: {unknown} are not fields of {config_cls.__name__}; check the spelling in the method/train config.")
    return config_cls(**values)
