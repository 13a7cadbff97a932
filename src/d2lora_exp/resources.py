"""What a phase of a run consumed: peak memory (host and CUDA) and the tokens its training fed the model.

Recorded per phase in metrics.json's provenance, so a result is read next to its cost (PEFT's method-comparison
benchmark records the same) and two runs that should be identical can be checked to have trained on the same tokens.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

log = logging.getLogger(__name__)

MIB = 1 << 20


def host_peak_rss_mib() -> float:
    """This process's peak resident set size so far. A high-water mark: it never goes down, so a phase's value is the
    peak of the run up to that phase's end (the phase that raised it is the first to show the new value)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (MIB if sys.platform == "darwin" else 1024), 1)  # bytes on macOS, KiB on Linux


@contextmanager
def peak_memory(into: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Fill `into` with the block's peaks, also when the block fails (an out-of-memory run says how far it got):
    the host's high-water mark at its end and, where CUDA is in use, the block's own peak allocated and reserved
    memory (reset at its start; if CUDA starts inside the block, its counters start there too)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
    try:
        yield into
    finally:
        into["host_peak_rss_mib"] = host_peak_rss_mib()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            into["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / MIB, 1)
            into["cuda_max_reserved_mib"] = round(torch.cuda.max_memory_reserved() / MIB, 1)


def fed_tokens(batch: dict[str, Any]) -> tuple[int, int] | None:
    """(positions, real tokens) of one collated training batch as the model is fed it; None for a layout not known.

    SFT and DPO batches hold `input_ids` (DPO: the chosen rows, then the rejected ones) and an `attention_mask` that
    marks the real tokens (a padding-free SFT batch has none: it has no padding). ORPO's hold `chosen_*` and
    `rejected_*`, which it pads to the longer of the two and stacks into one forward pass."""
    if "input_ids" in batch:
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        return ids.numel(), int(mask.sum()) if mask is not None else ids.numel()
    if "chosen_input_ids" in batch and "rejected_input_ids" in batch:
        chosen, rejected = batch["chosen_input_ids"], batch["rejected_input_ids"]
        positions = (chosen.shape[0] + rejected.shape[0]) * max(chosen.shape[1], rejected.shape[1])
        return positions, int(batch["chosen_attention_mask"].sum()) + int(batch["rejected_attention_mask"].sum())
    return None


class TokenCounter(TrainerCallback, ExportableState):
    """Counts the tokens every training micro-batch feeds the model: positions (padding included) and real tokens.

    Counted where the Trainer hands the batch to the model (`attach` wraps its `training_step`), so data-loader
    workers do not hide batches and the batches a resume skips are not counted. The counts travel in the Trainer's
    checkpoint (`trainer_state.json`, its stateful callbacks), so a resumed phase reports what one never
    interrupted would. The reference model's forward passes (DPO) are not counted: they train nothing."""

    def __init__(self, positions: int = 0, non_padding: int = 0, from_step: int = 0, unknown: list | None = None,
                 seconds: float = 0.0) -> None:
        self.positions, self.non_padding, self.from_step = positions, non_padding, from_step
        # Training seconds of the attempts before this one (carried by the checkpoint like the counts), so a resumed
        # phase's cost covers all of its training; `elapsed` adds this attempt's.
        self.seconds, self._began = seconds, None
        self.unknown = unknown  # the keys of a batch layout fed_tokens does not know; the totals are then null
        # Counted by this rank since the last `sync` (the totals above are every rank's, so a checkpoint, which the
        # main rank writes, carries the job's counts).
        self._pending = [0, 0]

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {"positions": self.positions, "non_padding": self.non_padding,
                                           "from_step": self.from_step, "unknown": self.unknown,
                                           "seconds": self.elapsed()}}

    def elapsed(self) -> float:
        """Training seconds of every attempt so far (this one since its train() began)."""
        now = 0.0 if self._began is None else time.perf_counter() - self._began
        return round(self.seconds + now, 2)

    def on_train_begin(self, args, state, control, **kwargs):
        """Take up the counts of the checkpoint being resumed (the Trainer loaded its state before this call)."""
        name = type(self).__name__
        saved = (state.stateful_callbacks or {}).get(name)
        if isinstance(saved, dict):
            for key, value in saved.get("attributes", {}).items():
                setattr(self, key, value)
        else:  # a checkpoint written without a counter: the totals cover the steps after it, said by from_step
            log.warning("the checkpoint resumed at step %d has no token counts: counting from there", state.global_step)
            self.from_step = state.global_step
            state.stateful_callbacks[name] = self.state()
        self._began = time.perf_counter()
        return control

    def attach(self, trainer) -> None:
        step = trainer.training_step

        def counted(model, inputs, *args: Any, **kwargs: Any):
            self.count(inputs)
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = counted

    def count(self, batch: dict[str, Any]) -> None:
        fed = fed_tokens(batch)
        if fed is None:
            self.unknown = sorted(batch)
            return
        from . import dist

        if dist.active():  # summed over the ranks by `sync`
            self._pending[0] += fed[0]
            self._pending[1] += fed[1]
        else:  # one process: its counts are the job's
            self.positions += fed[0]
            self.non_padding += fed[1]

    def sync(self) -> None:
        """Add every rank's micro-batches since the last call to the totals (all ranks call it at the same step)."""
        from . import dist

        positions, non_padding = dist.all_sum(self._pending)
        self.positions += positions
        self.non_padding += non_padding
        self._pending = [0, 0]

    def on_step_end(self, args, state, control, **kwargs):
        """Before a checkpoint saves the counts (CheckpointCallback, earlier in the list, has decided whether one is due,
        the same on every rank)."""
        if control.should_save:
            self.sync()
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.sync()
        return control

    def totals(self) -> dict[str, Any]:
        if self.unknown is not None:
            return {"positions": None, "non_padding": None, "padding": None, "from_step": self.from_step,
                    "reason": f"a training batch had no input_ids to count (keys {self.unknown})"}
        return {"positions": self.positions, "non_padding": self.non_padding,
                "padding": self.positions - self.non_padding, "from_step": self.from_step}
