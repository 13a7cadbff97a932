"""Batched greedy generation for evaluation: left padding, KV cache, longest prompts first."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .. import interrupt


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int, desc: str = "eval",
             stopped: list[bool] | None = None) -> list[str]:
    """Greedy completions of text prompts (already chat-rendered), returned in input order.

    If `stopped` is a list, it receives, in input order, whether each completion ended with the EOS
    token (the model closed its turn) rather than running into max_new_tokens."""
    if not prompts:
        return []
    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    # Sorting by length keeps padding (wasted compute) low inside each batch.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: list[str | None] = [None] * len(prompts)
    ended = [False] * len(prompts)
    try:
        with tqdm(total=len(prompts), desc=desc, unit="ex") as bar:
            for start in range(0, len(order), batch_size):
                interrupt.check("during evaluation")  # a long evaluation must not outlast SLURM's grace period
                idx = order[start : start + batch_size]
                batch = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                                  add_special_tokens=False).to(device)
                generated = model.generate(
                    **batch, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                    temperature=None, top_p=None, top_k=None,
                )
                new_tokens = generated[:, batch["input_ids"].shape[1] :]
                for i, text in zip(idx, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                    outputs[i] = text.strip()
                for i, row in zip(idx, new_tokens.tolist()):
                    ended[i] = tokenizer.eos_token_id in row
                bar.update(len(idx))
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    if stopped is not None:
        stopped[:] = ended
    return outputs  # type: ignore[return-value]
