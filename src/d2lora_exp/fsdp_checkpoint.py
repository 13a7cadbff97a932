"""Checkpoints of a model sharded by FSDP (dist=fsdp, several processes): the files one process writes, gathered.

The Trainer's own FSDP checkpoint fails for a sharded PeftModel in this stack (transformers 5.23 saves it through
accelerate's `get_state_dict` and PEFT's `save_pretrained`: "Attempted to access the data pointer on an invalid python
storage"), and its FULL_STATE_DICT branch would gather the whole frozen base into `pytorch_model_fsdp.bin` besides.
`attach` replaces, on one trainer, the four methods of the Trainer's save and resume path that touch the sharded
model and optimizer; the Trainer keeps doing the rest (RNG states per rank, trainer_state.json, the scheduler's
place in the folder, skipping the batches already seen) and checkpointing.CheckpointCallback marks the folder as
with one process. What is written, by the main rank (every rank takes part in the gathers):
- `adapter_model.safetensors` + `adapter_config.json`: the trainable adapter, gathered whole from the shards
  (torch.distributed.checkpoint.state_dict, full_state_dict + cpu_offload + ignore_frozen_params), in PEFT's layout.
  A frozen copy such as DPO's `ref` adapter is not written: TRL makes it again from the start adapter at every start.
- `optimizer.pt`: the optimizer's state gathered whole, keyed by parameter name; `scheduler.pt` as one process.
On resume every rank reads both files and takes its own shard of them (set_model_state_dict /
set_optimizer_state_dict with full_state_dict), so training goes on from the same numbers.
"""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Any

import torch

from . import fsdp
from .adapters import ADAPTER_FILE, ADAPTER_NAME

OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
TRAINING_ARGS_FILE = "training_args.bin"


def _options(**extra: bool) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


def attach(trainer: Any) -> None:
    """Route `trainer`'s checkpoint save and resume of the sharded model and optimizer through the functions below
    (instance attributes: the trainer's class, TRL's, is untouched)."""
    for name, function in (("save_model", save_model), ("_save_optimizer_and_scheduler", save_optimizer_and_scheduler),
                           ("_load_from_checkpoint", load_adapter),
                           ("_load_optimizer_and_scheduler", load_optimizer_and_scheduler)):
        setattr(trainer, name, types.MethodType(function, trainer))


def _peft_keys(model: Any) -> dict[str, str]:
    """{key in PEFT's file: the model's parameter name} for every trainable parameter. PEFT's files drop the adapter
    name from the parameter's name (get_peft_model_state_dict); a clash would make the mapping ambiguous."""
    names = [fsdp.plain_name(name) for name, p in model.named_parameters() if p.requires_grad]
    keys = {name.replace(f".{ADAPTER_NAME}", ""): name for name in names}
    if len(keys) != len(names):
        raise RuntimeError("two trainable parameters share one name in PEFT's adapter file; cannot checkpoint them")
    return keys


def save_model(self: Any, output_dir: str | None = None, _internal_call: bool = False) -> None:
    """The trainable adapter, gathered from the shards (a collective), written by the main rank as one process
    writes it, with the tokenizer and the training arguments."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    output_dir = output_dir or self.args.output_dir
    state = get_model_state_dict(self.model, options=_options(cpu_offload=True, ignore_frozen_params=True))
    if not self.args.should_save:  # cpu_offload: the other ranks got an empty dict
        return
    os.makedirs(output_dir, exist_ok=True)
    self.model.save_pretrained(output_dir, state_dict=state, selected_adapters=[ADAPTER_NAME], safe_serialization=True)
    if self.processing_class is not None:
        self.processing_class.save_pretrained(output_dir)
    torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_FILE))


def save_optimizer_and_scheduler(self: Any, output_dir: str) -> None:
    """The optimizer's state gathered whole (a collective), and the scheduler's; written by the main rank."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(self.model, self.optimizer, options=_options(cpu_offload=True))
    if self.args.should_save:
        os.makedirs(output_dir, exist_ok=True)
        torch.save(state, os.path.join(output_dir, OPTIMIZER_FILE))
        torch.save(self.lr_scheduler.state_dict(), os.path.join(output_dir, SCHEDULER_FILE))


def load_adapter(self: Any, resume_from_checkpoint: str, model: Any = None) -> None:
    """The checkpoint's adapter into the sharded model: every rank reads the whole file and keeps its shard."""
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    model = model if model is not None else self.model
    saved = load_file(str(Path(resume_from_checkpoint) / ADAPTER_FILE))
    keys = _peft_keys(model)
    if set(saved) != set(keys):
        raise RuntimeError(f"{resume_from_checkpoint}: its adapter holds {len(saved)} tensors, the model trains "
                           f"{len(keys)} others (e.g. {sorted(set(saved) ^ set(keys))[:3]}); cannot resume from it")
    set_model_state_dict(model, {keys[key]: value for key, value in saved.items()}, options=_options())


def load_optimizer_and_scheduler(self: Any, checkpoint: str | None) -> None:
    """The checkpoint's optimizer state into the sharded optimizer (every rank reads it, keeps its shard), and the
    scheduler's."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    if checkpoint is None:
        return
    state = torch.load(Path(checkpoint) / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    set_optimizer_state_dict(self.model, self.optimizer, state, options=_options())
    self.lr_scheduler.load_state_dict(torch.load(Path(checkpoint) / SCHEDULER_FILE, weights_only=True))
