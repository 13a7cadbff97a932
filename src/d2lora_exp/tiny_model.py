"""The embedded default model: a tiny Llama-architecture model and byte-level tokenizer built locally.

Nothing can come from the hub on CPU-only or offline machines, yet the whole chain (chat template,
PEFT, TRL trainers, generation) must run for real. So the project builds a model with the same
architecture class and loading path as Llama-3.1 (``from_pretrained`` on a directory) from a seed.
The tokenizer is byte-level without merges: every string is encodable and nothing needs training,
so the build is deterministic and takes about a second. World v5's model has a word-level one instead
(`train_word_tokenizer`), saved with it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .build_once import build_once
from .fingerprint import file_sha256, major_minor

SPECIAL_TOKENS = ["<|begin_of_text|>", "<|eot|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]

# Llama-3-like: BOS in the template (so TRL's add_special_tokens=False tokenisation gets exactly one),
# one role marker per turn, end-of-turn doubles as EOS so generation stops at the end of a reply.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|eot|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# The two Llama shapes the project builds from scratch: `tiny`, the random ~0.1M-parameter model of the
# smoke preset and the tests (built here, on first use, into the cache); `world`, the 0.84M-parameter
# (0.94M with world v5's 1,024-token word-level tokenizer)
# base model of the miniature world (pretrained by miniature/pretrain.py and shipped in the package).
ARCHS: dict[str, dict] = {
    "tiny": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True),
    "world": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=4, max_position_embeddings=1024, rms_norm_eps=1e-5, tie_word_embeddings=True),
}


def build_tokenizer():
    """Byte-level BPE with an empty merge list: 256 byte symbols plus the special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL_TOKENS)
    return _wrap(backend, "tiny")


def _wrap(backend, arch: str):
    """A `tokenizers` backend as the transformers tokenizer both builders return: the special tokens' roles, the chat
    template, right padding and `arch`'s context length."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot|>",
        pad_token="<|pad|>",
        chat_template=CHAT_TEMPLATE,
        padding_side="right",
        model_max_length=ARCHS[arch]["max_position_embeddings"],
    )


def train_word_tokenizer(texts: list[str], vocab_size: int = 1024):
    """A byte-level BPE tokenizer whose merges are learnt from ``texts``: words (with their leading space) and
    numbers become single tokens, as in Llama-3's tokenizer, and every string stays encodable (256 byte symbols).

    Why: a byte-level model must match a multi-byte key ("buys ") to copy the number after it from its
    context; world v5's byte-level base model never learnt that in three runs (docs/miniature/world-v5.md).
    With one token per word, copying "the number after `buys`" is a one-token match, the induction pattern small
    transformers do form. Training on the same texts gives the same merges (the `tokenizers` trainer is
    deterministic), and the tokenizer is saved with the model it was made for."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    # A space before each text (and each text between special tokens): a reply's first word is then the same token
    # as that word inside a sentence (" Dafopo", not "D" "af" "opo"), as the corpus has it; without it ARC-Easy,
    # which scores each choice as the start of a reply, was at chance (28% against 45%, measured).
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=SPECIAL_TOKENS, show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    return _wrap(backend, "world")


def config(tokenizer, arch: str):
    """The LlamaConfig of one of `ARCHS` with the given tokenizer's vocabulary and special tokens."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **ARCHS[arch])


def generation_config(tokenizer):
    from transformers import GenerationConfig

    return GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)


def stamp(seed: int) -> str:
    """What a built model is: this file's source (architecture, tokenizer, template), the seed, and the
    versions of the libraries that draw and write the weights; another stamp in a cache dir means a rebuild."""
    return json.dumps({"builder": "tiny_llama", "source": file_sha256(__file__)[:16], "seed": int(seed),
                       "versions": {m: major_minor(m) for m in ("torch", "transformers")}}, sort_keys=True)


def build(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write tokenizer + randomly initialised tiny Llama to ``path`` once (``build_once``); return ``path``."""
    from transformers import LlamaForCausalLM

    def write(tmp: Path) -> None:
        tokenizer = build_tokenizer()
        with torch.random.fork_rng(devices=[]):  # the weights come from `seed`; the caller's RNG is untouched
            torch.manual_seed(seed)
            model = LlamaForCausalLM(config(tokenizer, "tiny"))
        model.generation_config = generation_config(tokenizer)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return build_once(Path(path), stamp(seed), write).path
