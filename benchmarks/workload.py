"""The benchmark's workload: rows in the paper datasets' schemas whose token lengths follow the real datasets.

No real tokenizer of the paper's model is available offline, and speed does not depend on the words, so every text
field is a filler of random letters whose length in the bench's byte-level tokenizer (one token per byte) equals an
estimate of what Llama-3's tokenizer gives for the real text it stands for:

- lengths: the number of pieces Llama-3's pre-tokenizer (its published split regex) cuts a text into. With a 128k
  vocabulary almost every English word piece and every 1-3 digit group is one token, so this is close to (and at most
  slightly below) the true count; rare words split further.
- the chat template adds `TEMPLATE_TOKENS` around one user turn, as Llama-3.1-Instruct's default template does (BOS,
  the system header with its knowledge-cutoff and date lines, the user and assistant headers): the bench template
  emits that many tokens around the question.
- GSM8K (`../shared/data/gsm8k`): questions and solutions as they are; the math training pool in Math-Step-DPO's
  schema built from GSM8K train solutions (the prefix `initial_reason_steps`, the rest `full_chosen`, the rest of
  another solution as `full_rejected`: Math-Step-DPO's rejected answers are solutions of the same kind).
- ARC-Easy (`../shared/data/arc_easy`): questions and choices as they are.

Each GSM8K question also carries the length of its reference solution, which `ReplyLengths` makes a random-weight
model reply with, so evaluation's batched decoding runs to realistic reply lengths.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import regex
import torch

from meters import kv_cache

# Llama-3's pre-tokenizer split (tiktoken cl100k-style), from its tokenizer.json.
LLAMA3_SPLIT = regex.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TEMPLATE_TOKENS = 35  # Llama-3.1-Instruct's default template around one user turn (no system message given)
# BOS, <|system|>, <|eot|>, <|user|>, <|eot|>, <|assistant|>: six special tokens; the filler makes up the rest.
_SYSTEM_FILLER = "k" * (TEMPLATE_TOKENS - 6)
CHAT_TEMPLATE = (
    "{{ bos_token }}<|system|>" + _SYSTEM_FILLER + "<|eot|>{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|eot|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def estimate_tokens(text: str) -> int:
    """Llama-3 tokens of `text`, estimated as its pre-tokenizer pieces (see the module docstring)."""
    return len(LLAMA3_SPLIT.findall(text))


def filler(rng: random.Random, n: int) -> str:
    """`n` tokens of the bench tokenizer: lowercase letters and spaces, so no answer marker or number appears."""
    return "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(max(1, n)))


def bench_tokenizer():
    """The project's byte-level tokenizer (one token per byte) with a template as long as Llama-3.1-Instruct's."""
    from d2lora_exp import tiny_model

    tokenizer = tiny_model.build_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 1 << 20
    return tokenizer


def read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the benchmark draws its lengths from ../shared/data beside the "
                                "checkout (README of that folder)")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def _steps(solution: str) -> tuple[list[str], str]:
    """A GSM8K solution's reasoning lines and its final '#### N' line."""
    body, final = solution.rsplit("####", 1)
    return [line + "\n" for line in body.strip().split("\n")], "#### " + final.strip()


def _unique_questions(rng: random.Random, lengths: list[int]) -> list[str]:
    """Fillers of the given lengths, all different (ReplyLengths finds a question by its text)."""
    seen: set[str] = set()
    out = []
    for n in lengths:
        text = filler(rng, n)
        while text in seen:
            text = filler(rng, n)
        seen.add(text)
        out.append(text)
    return out


def step_dpo_rows(n: int, seed: int = 0, data: Path = SHARED_DATA) -> list[dict[str, str]]:
    """`n` math training rows in Math-Step-DPO's schema with GSM8K-train lengths (cycling through the file)."""
    source = read_jsonl(data / "gsm8k" / "train.jsonl")
    rng = random.Random(seed)
    order = [source[i % len(source)] for i in range(n)]
    questions = _unique_questions(rng, [estimate_tokens(r["question"]) for r in order])
    rows = []
    for row, question in zip(order, questions):
        steps, final = _steps(row["answer"])
        k = rng.randrange(len(steps))  # the prefix the pair shares: 0 .. all-but-one reasoning lines
        other, _ = _steps(rng.choice(source)["answer"])
        j = rng.randrange(len(other))
        lengths = {"initial_reason_steps": sum(map(estimate_tokens, steps[:k])),
                   "chosen": estimate_tokens(steps[k]), "rejected": estimate_tokens(other[j]),
                   "full_chosen": sum(map(estimate_tokens, steps[k:])) + estimate_tokens(final),
                   "full_rejected": sum(map(estimate_tokens, other[j:])) + estimate_tokens(final)}
        texts = {key: filler(rng, value) if value else "" for key, value in lengths.items()}
        rows.append({"dataset": "gsm8k-lengths", "prompt": question, **texts, "answer": final.removeprefix("#### ")})
    return rows


def gsm8k_test_rows(limit: int | None = None, seed: int = 0,
                    data: Path = SHARED_DATA) -> tuple[list[dict[str, str]], dict[str, int]]:
    """(GSM8K test rows with filler questions, {question: tokens of its reference solution + EOS}).

    The answer column keeps the real '#### N', which the evaluator reads as the gold number."""
    source = read_jsonl(data / "gsm8k" / "test.jsonl", limit)
    rng = random.Random(seed + 1)
    questions = _unique_questions(rng, [estimate_tokens(r["question"]) for r in source])
    rows = [{"question": q, "answer": "#### " + r["answer"].rsplit("####", 1)[1].strip()} for q, r in zip(questions, source)]
    replies = {q: estimate_tokens(r["answer"]) + 1 for q, r in zip(questions, source)}
    return rows, replies


def arc_rows(limit: int | None = None, seed: int = 0, data: Path = SHARED_DATA) -> list[dict[str, Any]]:
    """ARC-Easy test rows with filler questions and choices of the real ones' lengths."""
    rng = random.Random(seed + 2)
    rows = []
    for row in read_jsonl(data / "arc_easy" / "test.jsonl", limit):
        choices = {"text": [filler(rng, estimate_tokens(t)) for t in row["choices"]["text"]],
                   "label": list(row["choices"]["label"])}
        rows.append({"id": row["id"], "question": filler(rng, estimate_tokens(row["question"])), "choices": choices,
                     "answerKey": row["answerKey"]})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class ReplyLengths:
    """Makes a random-weight model reply to each GSM8K question with as many tokens as its reference solution.

    A forward hook on the causal LM, active only in generation (calls that carry a KV cache): at the prompt's
    forward it finds each row's question in the decoded prompt; at every forward it forbids EOS before the row's
    reply length and forces it at that length. It also counts what batched decoding computes: `slots` (one per row
    per forward: a batch runs until its longest reply ends) against `useful` (each reply's tokens, EOS included, up
    to max_new_tokens), and the prompt positions that are padding."""

    def __init__(self, tokenizer, replies: dict[str, int]) -> None:
        self.tokenizer, self.replies = tokenizer, replies
        self.user, self.eot = "<|user|>", "<|eot|>"
        self.targets: list[int] = []
        self.produced: list[int] = []
        self.slots = self.useful = self.batches = self.prompt_positions = self.prompt_tokens = 0

    def _question(self, ids: list[int]) -> int:
        text = self.tokenizer.decode([i for i in ids if i != self.tokenizer.pad_token_id], skip_special_tokens=False)
        start = text.rfind(self.user)
        if start < 0:
            raise RuntimeError(f"ReplyLengths: no user turn in a generation prompt: {text[:200]!r}")
        content = text[start + len(self.user):].split(self.eot, 1)[0]
        if content not in self.replies:
            raise RuntimeError(f"ReplyLengths: a generation prompt holds no known question: {content[:80]!r}")
        return self.replies[content]

    def __call__(self, module, args, kwargs, output):
        if kv_cache(kwargs) is None:
            return None  # training or log-likelihood scoring: not generation
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids.shape[1] > 1:  # the prompt's forward starts a batch
            self.targets = [self._question(row) for row in ids.tolist()]
            self.produced = [0] * len(self.targets)
            self.batches += 1
            self.prompt_positions += ids.numel()
            mask = kwargs.get("attention_mask")
            self.prompt_tokens += int(mask.sum()) if mask is not None else ids.numel()
        k = [p + 1 for p in self.produced]  # this forward produces each row's k-th reply token
        self.slots += len(k)
        self.useful += sum(n <= target for n, target in zip(k, self.targets))
        stop = torch.tensor([n >= target for n, target in zip(k, self.targets)], device=output.logits.device)
        # Random logits are a few units wide: +-1e4 decides greedy decoding in fp32 and bf16 alike.
        output.logits[:, -1, self.tokenizer.eos_token_id] = torch.where(stop, 1e4, -1e4).to(output.logits.dtype)
        self.produced = k
        return output

    def attach(self, model):
        """Hook the causal LM under any PEFT wrapper; returns the handle (`.remove()` detaches)."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        return base.register_forward_hook(self, with_kwargs=True)

    def summary(self) -> dict[str, Any]:
        return {"batches": self.batches, "decode_slots": self.slots, "reply_tokens": self.useful,
                "slots_per_reply_token": round(self.slots / self.useful, 3) if self.useful else None,
                "prompt_padding_share": round(1 - self.prompt_tokens / self.prompt_positions, 4)
                if self.prompt_positions else None}
