"""Render chat prompts as text, so SFT, DPO, ORPO and evaluation all see the identical prompt string.

TRL tokenises text prompts with add_special_tokens=False, and so does `generation.generate`; the
chat template therefore carries the single BOS, exactly as at inference.
"""

from __future__ import annotations


def user_prompt(tokenizer, content: str, system: str | None = None) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    return render(tokenizer, messages)


def render(tokenizer, messages: list[dict]) -> str:
    """The conversation up to and including the assistant header the model continues from."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
