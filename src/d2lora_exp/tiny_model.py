"""The embedded default model: a tiny Llama-architecture model and byte-level tokenizer built locally.

Nothing can come from the hub on CPU-only or offline machines, yet the whole chain (chat template,
PEFT, TRL trainers, generation) must run for real. So the project builds a model with the same
architecture class and loading path as Llama-3.1 (``from_pretrained`` on a directory) from a seed.
The tokenizer is byte-level without merges: every string is encodable and nothing needs training,
so the build is deterministic and takes about a second.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from filelock import FileLock

SPECIAL_TOKENS = ["<|begin_of_text|>", "<|eot|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]

# Llama-3-like: BOS in the template (so TRL's add_special_tokens=False tokenisation gets exactly one),
# one role marker per turn, end-of-turn doubles as EOS so generation stops at the end of a reply.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|eot|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

TINY_ARCH = dict(
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
)


def build_tokenizer():
    """Byte-level BPE with an empty merge list: 256 byte symbols plus the special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot|>",
        pad_token="<|pad|>",
        chat_template=CHAT_TEMPLATE,
        padding_side="right",
        model_max_length=TINY_ARCH["max_position_embeddings"],
    )


def build(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write tokenizer + randomly initialised tiny Llama to ``path`` (atomically, under a lock)."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / "config.json").exists():
            return path
        tokenizer = build_tokenizer()
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **TINY_ARCH,
        )
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        torch.random.set_rng_state(generator_state)
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        tmp = Path(tempfile.mkdtemp(prefix=path.name + ".tmp-", dir=path.parent))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path
