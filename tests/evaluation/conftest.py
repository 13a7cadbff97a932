"""A scripted language model for the harness: the shipped tasks' prompting and scoring run for real, the model's
replies and log-likelihoods are chosen by the test."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lm_eval.api.model import LM

from d2lora_exp.evaluation import harness


class ScriptedLM(LM):
    """`reply(context) -> text` for generation tasks, `logprob(context, continuation) -> float` for multiple choice."""

    def __init__(self, reply: Callable[[str], str] | None = None, logprob: Callable[[str, str], float] | None = None):
        super().__init__()
        self.reply, self.logprob = reply, logprob
        self.contexts: list[str] = []

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        self.contexts += [r.args[0] for r in requests]
        return [self.reply(r.args[0]) for r in requests]

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        self.contexts += [r.args[0] for r in requests]
        return [(self.logprob(*r.args), False) for r in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return "".join(f"<{m['role']}>{m['content']}" for m in chat_history) + "<assistant>"

    @property
    def tokenizer_name(self) -> str:
        return "scripted"

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return "scripted"


@pytest.fixture
def scripted_engine():
    """`scripted_engine(lm)`: a harness.Engine whose model is the scripted `lm`."""

    def make(lm: ScriptedLM) -> harness.Engine:
        engine = harness.Engine("hf", None, None, 1, 8, "scripted", "float32")
        engine._lm = lm
        return engine

    return make


@pytest.fixture
def scripted_lm():
    return ScriptedLM


def script_replies(model, tokenizer, script: dict[str, str], default: str) -> None:
    """Make `model` reply by a script of token transitions: after token `a` it emits `script[a]` (tokens given as
    strings of one token each), after any other token `default`; a forward hook overwrites the last position's logits,
    so `generate` (KV cache, batches) and every engine built on it follow the script."""
    import torch

    vocab = model.config.vocab_size
    ids = {k: tokenizer.convert_tokens_to_ids(k) if k.startswith("<|") else tokenizer(k, add_special_tokens=False)["input_ids"][0]
           for k in [*script, *script.values(), default]}
    table = torch.full((vocab,), ids[default], dtype=torch.long)
    for a, b in script.items():
        table[ids[a]] = ids[b]

    def hook(module, args, kwargs, output):
        last = kwargs["input_ids"][:, -1]
        logits = torch.full_like(output.logits[:, -1, :], -1e4)
        logits[torch.arange(len(last)), table[last.cpu()].to(logits.device)] = 1e4
        output.logits[:, -1, :] = logits
        return output

    model.register_forward_hook(hook, with_kwargs=True)


@pytest.fixture
def second_end_token_model(tmp_path):
    """`make(listed, emitted)`: the tiny model and tokenizer, the model's generation config listing the end tokens
    `listed` (like Llama-3.1-Instruct's three), scripted to reply "OK", then the end token `emitted`, then (should
    generation go on) "X" forever. `<|system|>` stands for a second end token such as Llama's <|eom_id|>."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from d2lora_exp import tiny_model

    path = tiny_model.build(tmp_path / "tiny")

    def make(listed: list[str], emitted: str):
        model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
        model.generation_config.eos_token_id = [tok.convert_tokens_to_ids(t) for t in listed]
        script_replies(model, tok, {"<|assistant|>": "O", "O": "K", "K": emitted}, default="X")
        return model, tok

    return make
