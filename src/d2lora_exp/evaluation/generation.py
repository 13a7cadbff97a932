"""Batched greedy generation for evaluation: left padding, KV cache, longest prompts first, stopping at every end
token the model's generation config lists (Llama-3.1-Instruct lists three: end of text, of a message, of a turn)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from .. import interrupt


def end_token_ids(model, tokenizer) -> list[int]:
    """Every token that ends a reply: the tokenizer's EOS and each id the model's generation config lists.

    Passing only `tokenizer.eos_token_id` to `generate` replaces the generation config's list, so a Llama-3.1-Instruct
    reply ended by <|eom_id|> or <|end_of_text|> would run on to max_new_tokens and count as not stopped."""
    listed = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    listed = [] if listed is None else [listed] if isinstance(listed, int) else list(listed)
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return list(dict.fromkeys(int(i) for i in [*ids, *listed]))


def cut_at_end(tokens: list[int], end_ids: list[int]) -> tuple[list[int], bool]:
    """(the reply's tokens before its first end token, whether it had one)."""
    ends = set(end_ids)
    for position, token in enumerate(tokens):
        if token in ends:
            return tokens[:position], True
    return tokens, False


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int, desc: str = "eval",
             stopped: list[bool] | None = None, check: Callable[[str], None] | None = None) -> list[str]:
    """Greedy completions of text prompts (already chat-rendered), returned in input order.

    If `stopped` is a list, it receives, in input order, whether each completion ended with an end token
    (`end_token_ids`: the model closed its turn) rather than running into max_new_tokens. `check` (default
    interrupt.check) runs before each batch; split evaluation (ranks.py) agrees its stops itself and passes a no-op."""
    if not prompts:
        return []
    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    end_ids = end_token_ids(model, tokenizer)
    # Sorting by length keeps padding (wasted compute) low inside each batch.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: list[str | None] = [None] * len(prompts)
    ended = [False] * len(prompts)
    try:
        with tqdm(total=len(prompts), desc=desc, unit="ex") as bar:
            for start in range(0, len(order), batch_size):
                (check or interrupt.check)("during evaluation")  # must not outlast SLURM's grace period
                idx = order[start : start + batch_size]
                batch = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                                  add_special_tokens=False).to(device)
                generated = model.generate(
                    **batch, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=end_ids,
                    temperature=None, top_p=None, top_k=None,
                )
                for i, row in zip(idx, generated[:, batch["input_ids"].shape[1] :].tolist()):
                    reply, ended[i] = cut_at_end(row, end_ids)
                    outputs[i] = tokenizer.decode(reply, skip_special_tokens=True).strip()
                bar.update(len(idx))
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    if stopped is not None:
        stopped[:] = ended
    return outputs  # type: ignore[return-value]
