"""FSDP (`dist=fsdp`): the model sharded across the processes of one run, through the Trainer's own FSDP support.

The Trainer hands `fsdp_config` to accelerate's FSDP plugin, which shards each decoder layer (the model's
`_no_split_modules`) with FSDP2's `fully_shard` when training starts. What this module adds:
- `trainer_args`: the Trainer's `fsdp` / `fsdp_config` from `dist.fsdp_config`, only with several processes (the
  Trainer refuses FSDP in a single process).
- `check`: what FSDP cannot run here (inits that rewrite or calibrate the base, settings not tested), refused before
  the model loads. Checkpoints are not among them: fsdp_checkpoint.py writes and loads them in place of the
  Trainer's own FSDP checkpoint, which fails for a sharded PeftModel in this stack.
- `enable_on_cpu`: accelerate applies an FSDP plugin only on accelerators (MULTI_GPU, ...) and silently trains
  DDP on CPU (MULTI_CPU) instead; `fully_shard` itself runs on CPU with gloo, so on CPU the plugin is applied after
  the accelerator is made (the same plugin accelerate would have applied). This is how the CPU tests run FSDP.
- `adapter_state` / `is_sharded`: a trained model's LoRA weights gathered from the shards (every rank takes part),
  so the main rank saves the adapter as one process would (the base weights are never gathered).
"""

from __future__ import annotations

import functools
from typing import Any

from omegaconf import OmegaConf

from . import dist
from .errors import UserError

STRATEGY = "fsdp"
# Values of `dist.fsdp_config` this project runs and tests; anything else is refused (checked in `check`).
ALLOWED = {"version": (2,), "state_dict_type": ("FULL_STATE_DICT",), "auto_wrap_policy": ("TRANSFORMER_BASED_WRAP",)}
FREE = ("reshard_after_forward", "cpu_ram_efficient_loading", "activation_checkpointing", "cpu_offload",
        "transformer_layer_cls_to_wrap")


def enabled(cfg: Any) -> bool:
    """FSDP shards the model only with several processes; one process trains as with dist=ddp."""
    return cfg.dist.strategy == STRATEGY and dist.active()


def settings(cfg: Any) -> dict[str, Any]:
    return OmegaConf.to_container(cfg.dist.get("fsdp_config") or OmegaConf.create({}), resolve=True)


def check(cfg: Any) -> None:
    """Refuse before the model loads what FSDP cannot do in this recipe (one line each)."""
    if cfg.dist.strategy != STRATEGY:
        return
    from . import inits

    values = settings(cfg)
    for key, value in values.items():
        if key in ALLOWED and value not in ALLOWED[key]:
            raise UserError(f"dist.fsdp_config.{key}={value!r} is not supported: use {ALLOWED[key][0]!r}.")
        if key not in ALLOWED and key not in FREE:
            raise UserError(f"dist.fsdp_config.{key} is not a setting this project passes to FSDP: use "
                            f"{sorted([*ALLOWED, *FREE])}.")
        names = key == "transformer_layer_cls_to_wrap"
        if key in FREE and not (isinstance(value, bool) if not names else value is None or isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value))):
            kind = "a class name or a list of them" if names else "true or false"
            raise UserError(f"dist.fsdp_config.{key}={value!r} is not valid: use {kind}.")
    if values.get("activation_checkpointing") is True:
        raise UserError("dist.fsdp_config.activation_checkpointing=true is not supported yet (its wrappers rename every "
                        "parameter, and the adapter's checkpoint came out empty in tests/test_distributed.py): set it "
                        "to false.")
    base = cfg.init.get("base", "default")
    if base in inits.REWRITES_BASE | inits.NEEDS_CALIBRATION:
        raise UserError(f"init.base={base} is not supported with dist=fsdp (its adapter is converted against the "
                        "initial weights, or initialised from calibration activations, on an unsharded model): use "
                        "dist=ddp, or init.base=default or gaussian.")


def trainer_args(cfg: Any) -> dict[str, Any]:
    """The Trainer's FSDP arguments (none with one process, or with dist=ddp)."""
    if not enabled(cfg):
        return {}
    return {"fsdp": True, "fsdp_config": settings(cfg)}


def enable_on_cpu() -> None:
    """Make the Trainer apply its FSDP plugin on CPU (gloo) too; idempotent, process-wide (see the module docstring).
    On CUDA accelerate applies it itself and this is not called."""
    from transformers import Trainer

    original = Trainer.create_accelerator_and_postprocess
    if getattr(original, "_d2lora_fsdp_on_cpu", False):
        return

    @functools.wraps(original)
    def create(self, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        plugin_args = self.args.fsdp_plugin_args
        state = self.accelerator.state
        from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

        if plugin_args is not None and state.distributed_type != DistributedType.FSDP:
            plugin = FullyShardedDataParallelPlugin(**plugin_args)
            if state.mixed_precision != "no":
                plugin.set_mixed_precision(state.mixed_precision)
            state.distributed_type = DistributedType.FSDP
            state.fsdp_plugin = plugin
            self.is_fsdp_enabled = True
        return result

    create._d2lora_fsdp_on_cpu = True  # type: ignore[attr-defined]
    Trainer.create_accelerator_and_postprocess = create


def is_sharded(model: Any) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


def adapter_state(model: Any) -> dict[str, Any]:
    """Every LoRA weight of a sharded model, whole, on every rank (a collective: every rank calls it, in the same
    order), keyed as the model's state_dict is (what PEFT's save_pretrained takes as `state_dict`)."""
    from torch.distributed.tensor import DTensor

    return {plain_name(name): (p.full_tensor() if isinstance(p, DTensor) else p).detach().cpu()
            for name, p in model.named_parameters() if "lora_" in name}


WRAPPERS = ("_checkpoint_wrapped_module.", "_orig_mod.", "_fsdp_wrapped_module.")


def plain_name(name: str) -> str:
    """A parameter's name without the wrappers' parts (activation checkpointing, torch.compile, FSDP1), as the
    state_dict and PEFT's files have it: `dist.fsdp_config.activation_checkpointing=true` wraps every layer."""
    for part in WRAPPERS:
        name = name.replace(part, "")
    return name


def release(trainer: Any) -> None:
    """Drop the trainer's references to the sharded model, its optimizer and scheduler, then the freed GPU blocks,
    before the unsharded model for evaluation is loaded beside what training left."""
    import gc

    import torch

    for name in ("model", "model_wrapped", "optimizer", "lr_scheduler"):
        if hasattr(trainer, name):
            setattr(trainer, name, None)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
