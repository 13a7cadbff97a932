"""What the benchmark counts. Counts and shares are the same on any machine, so a CPU measures what a GPU will do.

- `ForwardCounter`: passes through the decoder (the whole stack: policy, DPO reference) and through the first
  layer's attention (which also counts what gradient checkpointing recomputes in the backward pass: transformers
  checkpoints a layer's `forward`, so hooks on the layer itself do not see the recomputation, those inside it do).
- `StepMeter`: per optimizer step, its end time and the positions and real tokens the Trainer fed the model.
- `padding`: the share of the positions a trainer's batches compute that are padding, over one epoch of its loader.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from transformers import TrainerCallback

from d2lora_exp.resources import fed_tokens


def decoder(model):
    """The decoder stack (LlamaModel) under any PEFT wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model


def kv_cache(kwargs: dict[str, Any]) -> Any:
    """The KV cache a forward was given, or None (scoring, training). transformers 5.24 renamed the keyword from
    `past_key_values` to `cache`; a hook reading only one name would take every decoding step for a scoring pass."""
    return kwargs.get("cache", kwargs.get("past_key_values"))


class ForwardCounter:
    """Forward pre-hooks on the decoder stack and on its first layer's attention; `snapshot()` reads the totals."""

    def __init__(self, model) -> None:
        self.stack_calls = self.stack_rows = self.layer_calls = 0
        self.scored_positions = self.scored_real = 0  # forwards without a KV cache (scoring, training) with a mask
        stack = decoder(model)
        self.handles = [stack.register_forward_pre_hook(self._stack, with_kwargs=True),
                        stack.layers[0].self_attn.register_forward_pre_hook(self._layer)]

    def _stack(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        self.stack_calls += 1
        self.stack_rows += (ids if ids is not None else embeds).shape[0]
        mask = kwargs.get("attention_mask")
        if kv_cache(kwargs) is None and mask is not None and mask.dim() == 2:
            self.scored_positions += mask.numel()
            self.scored_real += int(mask.sum())

    def _layer(self, module, args) -> None:
        self.layer_calls += 1

    def snapshot(self) -> dict[str, int]:
        return {"stack_calls": self.stack_calls, "stack_rows": self.stack_rows, "layer_calls": self.layer_calls}

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class StepMeter(TrainerCallback):
    """Times each optimizer step and counts what each micro-batch fed the model, as the project's TokenCounter
    counts it (`fed_tokens`), so tokens/s is the same quantity for every trainer."""

    def __init__(self, counter: ForwardCounter) -> None:
        self.counter = counter
        self.positions = self.real = self.micro_batches = 0
        self.steps: list[dict[str, Any]] = []

    def attach(self, trainer) -> None:
        step = trainer.training_step

        def counted(model, inputs, *args: Any, **kwargs: Any):
            fed = fed_tokens(inputs)
            if fed is None:
                raise RuntimeError(f"StepMeter: a training batch of unknown layout (keys {sorted(inputs)})")
            self.positions += fed[0]
            self.real += fed[1]
            self.micro_batches += 1
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = counted
        trainer.add_callback(self)

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = {"time": time.perf_counter(), **self.counter.snapshot()}

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.steps.append({"time": time.perf_counter(), "positions": self.positions, "real": self.real,
                           "micro_batches": self.micro_batches, **self.counter.snapshot()})

    def measured(self, warmup: int) -> dict[str, float]:
        """Rates over the steps after the first `warmup` ones (which pay for allocation and first-call costs)."""
        if len(self.steps) <= warmup:
            raise RuntimeError(f"StepMeter: {len(self.steps)} steps recorded, {warmup} are warm-up: nothing to time")
        first = self.steps[warmup - 1] if warmup else self.start
        last = self.steps[-1]
        seconds = last["time"] - first["time"]
        steps, micro = len(self.steps) - warmup, last["micro_batches"] - first.get("micro_batches", 0)
        return {"steps": steps, "step_s": seconds / steps,
                "tokens_per_s": (last["real"] - first.get("real", 0)) / seconds,
                "positions_per_s": (last["positions"] - first.get("positions", 0)) / seconds,
                "stack_forwards_per_micro_batch": (last["stack_calls"] - first["stack_calls"]) / micro,
                "layer0_forwards_per_micro_batch": (last["layer_calls"] - first["layer_calls"]) / micro,
                "rows_per_stack_forward": (last["stack_rows"] - first["stack_rows"])
                / max(1, last["stack_calls"] - first["stack_calls"])}


def padding(trainer) -> dict[str, Any]:
    """Positions and real tokens of one epoch of the trainer's training batches, exactly as its sampler and collator
    build them (nothing is run through the model)."""
    positions = real = batches = 0
    for batch in trainer.get_train_dataloader():
        fed = fed_tokens(batch)
        if fed is None:
            raise RuntimeError(f"padding: a training batch of unknown layout (keys {sorted(batch)})")
        positions, real, batches = positions + fed[0], real + fed[1], batches + 1
    return {"batches": batches, "positions": positions, "real": real, "share": round(1 - real / positions, 4)}


def lora_targets(model) -> list[str]:
    """The module names (last part) that carry a LoRA adapter, e.g. ['down_proj', 'gate_proj', ...]."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if hasattr(module, "lora_A")})
