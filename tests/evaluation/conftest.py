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
