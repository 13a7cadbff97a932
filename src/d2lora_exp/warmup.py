"""The D2LoRA warm-up data: prompt + chosen answer of orpo-dpo-mix-40k-style rows, as SFT rows.

`chosen` is a chat (user turns, then the final assistant reply); the warm-up learns that reply given
everything before it, rendered with the model's own chat template.
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from . import chat
from .data import sources
from .errors import UserError

WHAT = "warm-up data (orpo-dpo-mix-40k schema)"


def load_pool(warmup_cfg: Any) -> Dataset:
    ds = sources.load(warmup_cfg.data, WHAT)
    sources.require_columns(ds, {"chosen": list}, WHAT)
    drop = set(warmup_cfg.get("drop_sources") or [])
    if drop and "source" in ds.column_names:
        ds = ds.filter(lambda src: src not in drop, input_columns="source")
    size = warmup_cfg.get("size")
    if size is not None:
        sources.require_size(int(size), ds, "warm-up pool (warmup.size)")
        ds = ds.select(range(int(size)))
    if len(ds) == 0:
        raise UserError(f"{WHAT}: no rows left after dropping sources {sorted(drop)}.")
    return ds


def sft_rows(rows: Dataset, tokenizer) -> Dataset:
    prompts, completions = [], []
    for i, messages in enumerate(rows["chosen"]):
        if not messages or messages[-1].get("role") != "assistant" or len(messages) < 2:
            raise UserError(f"{WHAT}: row {i} `chosen` must be user turn(s) followed by an assistant reply.")
        prompts.append(chat.render(tokenizer, [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]))
        completions.append(messages[-1]["content"])
    return Dataset.from_dict({"prompt": prompts, "completion": completions})
