"""The type and range of every value a user can set, checked first thing in the prepare phase.

A negative learning rate, a batch of 0 or `eval.limit=0` would otherwise pass the composition, load the model
and fail minutes later inside TRL or generation, or worse, run and produce nothing. Each rule names the value,
what it must be, and so the fix, in one line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .errors import UserError

# (dotted key, what it must be, test). Keys absent from a config (e.g. `method.beta` for SFT) are skipped.
Rule = tuple[str, str, Callable[[Any], bool]]


def _int(lo: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _number(lo: float, strict: bool = True, hi: float = math.inf) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return (v > lo if strict else v >= lo) and v < hi
    return ok


def _optional(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or test(v)


def _every(v: Any) -> bool:
    from .checkpointing import parse_every

    try:
        parse_every(v)
    except ValueError:
        return False
    return True


RULES: list[Rule] = [
    ("seed", "an integer >= 0", _int(0)),
    ("method.learning_rate", "a number > 0, e.g. 1e-6", _number(0)),
    ("method.num_train_epochs", "a number > 0", _number(0)),
    ("method.beta", "a number > 0", _number(0)),
    ("method.precompute_ref", "auto, true or false", lambda v: v == "auto" or isinstance(v, bool)),
    ("warmup.learning_rate", "a number > 0, e.g. 1e-7", _number(0)),
    ("warmup.num_train_epochs", "a number > 0", _number(0)),
    ("warmup.size", "null (all rows) or an integer >= 1", _optional(_int(1))),
    ("train.per_device_train_batch_size", "an integer >= 1", _int(1)),
    ("train.gradient_accumulation_steps", "an integer >= 1", _int(1)),
    ("train.max_length", "an integer >= 16", _int(16)),
    ("train.logging_steps", "an integer >= 1", _int(1)),
    ("train.warmup_steps", "an integer >= 0", _int(0)),
    ("train.weight_decay", "a number >= 0", _number(0, strict=False)),
    ("train.dataloader_num_workers", "an integer >= 0", _int(0)),
    ("train.gradient_checkpointing", "true or false", lambda v: isinstance(v, bool)),
    ("train.checkpoint_every", "'<N>steps' (N >= 1), '<M>min' (M > 0) or null (only on a stop signal)",
     _every),
    ("train.checkpoint_keep", "an integer >= 1", _int(1)),
    ("train.overlong", "drop, truncate or error", lambda v: v in ("drop", "truncate", "error")),
    ("train.liger", "auto, true or false", lambda v: v == "auto" or isinstance(v, bool)),
    ("train.padding_free", "auto, true or false", lambda v: v == "auto" or isinstance(v, bool)),
    ("train.group_by_length", "true or false", lambda v: isinstance(v, bool)),
    ("lora.r", "an integer >= 1", _int(1)),
    ("lora.alpha", "a number > 0", _number(0)),
    ("lora.dropout", "a number in [0, 1)", _number(0, strict=False, hi=1)),
    ("eval.batch_size", "an integer >= 1", _int(1)),
    ("eval.max_new_tokens", "an integer >= 1", _int(1)),
    ("eval.limit", "null (every example) or an integer >= 1", _optional(_int(1))),
    ("eval.engine", "hf or vllm", lambda v: v in ("hf", "vllm")),
    ("eval.vllm_args", "null or a mapping of vLLM engine arguments, e.g. {gpu_memory_utilization: 0.8}",
     _optional(lambda v: isinstance(v, dict))),
    ("eval.harness.tasks", "a list of lm-evaluation-harness task names, e.g. [gsm8k, arc_easy]",
     lambda v: isinstance(v, list) and all(isinstance(t, str) and t for t in v)),
    ("eval.harness.data_files", "null or a mapping {task: {split: file}}", _optional(lambda v: isinstance(v, dict))),
    ("eval.harness.apply_chat_template", "true or false", lambda v: isinstance(v, bool)),
    ("eval.harness.num_fewshot", "null (each task's default) or an integer >= 0", _optional(_int(0))),
    ("eval.harness.fewshot_as_multiturn", "true or false", lambda v: isinstance(v, bool)),
    ("calibration.rows", "an integer >= 1", _int(1)),
    ("calibration.batch_size", "an integer >= 1", _int(1)),
    ("task.train.subset_seed", "an integer >= 0", _int(0)),
    ("wandb.mode", "auto, online, offline or disabled", lambda v: v in ("auto", "online", "offline", "disabled")),
    ("wandb.probe_timeout_s", "a number > 0 (seconds)", _number(0)),
]


def check(cfg: DictConfig) -> None:
    """Raise UserError naming the first value out of its type or range."""
    for key, must_be, test in RULES:
        value = OmegaConf.select(cfg, key, default=_MISSING)
        if value is _MISSING:
            continue
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if not test(value):
            raise UserError(f"{key}={value!r} is not valid: use {must_be}.")


_MISSING = object()
