"""The miniature world's base model: the pretraining script works, and the shipped model learnt the world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from d2lora_exp import tiny_model
from d2lora_exp.build_once import MARKER
from d2lora_exp.config import bundled_model
from d2lora_exp.miniature import pretrain, world


def _docs(n: int, seed: int = 0, version: int = 3) -> list[str]:
    return world.pretraining_corpus(world.World(seed, version), seed + 7, n)


@pytest.mark.e2e
@pytest.mark.parametrize("version", world.VERSIONS)
def test_pretraining_runs_is_deterministic_and_lowers_the_loss(tmp_path, version):
    docs = _docs(300, version=version)
    kw = dict(steps=8, batch_size=4, seq_len=64, warmup_steps=2, log_every=1, probe_n=3, version=version,
              copy_every=4)
    a = pretrain.pretrain(tmp_path / "a", docs, **kw)
    pretrain.pretrain(tmp_path / "b", docs, **kw)
    copies = {"copy_operand", "computed", "copy_recall"} | ({"copy_restate"} if version >= 5 else set())
    assert set(a["probe"]) == {"arithmetic", "quiz", "word_problems", "n"} | copies and a["probe"]["n"] == 3
    assert [set(h["copy_probe"]) for h in a["history"] if "copy_probe" in h] == [copies]  # at step 4 of 8
    assert a["world"] == version
    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["history"][-1]["loss"] < a["history"][0]["loss"]
    assert json.loads((tmp_path / "a" / "pretrain.json").read_text())["steps"] == 8
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 4
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")
    assert a["tokenizer"] == pretrain.DEFAULT_TOKENIZER[version] and a["vocab_size"] == len(tokenizer)
    if a["tokenizer"] == "word":  # words are single tokens (world v5), bytes otherwise
        assert len(tokenizer(" has", add_special_tokens=False)["input_ids"]) == 1
        assert len(tokenizer) > 256 + len(tiny_model.SPECIAL_TOKENS)  # merges learnt
    else:
        assert len(tokenizer) == len(tiny_model.build_tokenizer())
    torch.manual_seed(0)  # the initial weights pretrain() drew: the saved ones are the trained ones
    fresh = LlamaForCausalLM(tiny_model.config(tokenizer, "world")).state_dict()
    assert any(not torch.equal(wa[k], fresh[k]) for k in wa)
    assert json.loads((tmp_path / "a" / MARKER).read_text())["files"]["model.safetensors"]  # written by build_once
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o755 and not list(tmp_path.glob("a.tmp-*"))


def _loss(model, tokenizer, docs: list[str]) -> float:
    stream = pretrain.token_stream(tokenizer, docs)[: 64 * 128].view(-1, 128)
    with torch.no_grad():
        return float(model(input_ids=stream, labels=stream).loss)


def test_the_shipped_model_knows_the_world_a_random_model_does_not(tmp_path):
    path = bundled_model("tiny-world-llama")
    shipped = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    random_model = AutoModelForCausalLM.from_pretrained(tiny_model.build(tmp_path / "random"))
    docs = _docs(200, seed=0)  # the shipped model's world (seed 0), documents drawn with another seed
    assert _loss(shipped, tokenizer, docs) < 0.5 * _loss(random_model, tokenizer, docs)
    info = json.loads((Path(path) / "pretrain.json").read_text())
    assert info["seed"] == 0 and info["parameters"] == sum(p.numel() for p in shipped.parameters()) < 2_000_000
    assert all(getattr(shipped.config, k) == v for k, v in tiny_model.ARCHS["world"].items())


def test_the_copy_probe_tells_copying_from_computing(tmp_path):
    """The shipped v3 model computes results and copies operands far better than a random model; world v3 has no
    quoted spans, so there is no copy_restate; in world v5 every step quotes one."""
    path = bundled_model("tiny-world-llama")
    shipped, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    random_model = AutoModelForCausalLM.from_pretrained(tiny_model.build(tmp_path / "random"))
    trained, untrained = (pretrain.copy_probe(m, tokenizer, n=40) for m in (shipped, random_model))
    assert set(trained) == {"copy_operand", "computed", "copy_recall"}
    assert trained["computed"] > untrained["computed"] + 30 and trained["copy_operand"] > untrained["copy_operand"] + 20
    assert set(pretrain.copy_probe(random_model, tokenizer, n=5, version=5)) == {"copy_restate", "copy_operand",
                                                                                 "computed", "copy_recall"}


@pytest.mark.parametrize("kind", ["byte", "word"])
def test_a_number_counts_as_copied_only_when_every_token_of_it_is_predicted(kind):
    """The copy probe works on characters, whatever the tokenizer: " 17" is one token with the word tokenizer,
    three bytes with the byte tokenizer; a number is exact only when all its tokens are the model's argmax."""
    text = "Ana buys 17 more. Ana buys 17 more."
    tok = (tiny_model.build_tokenizer() if kind == "byte"
           else tiny_model.train_word_tokenizer([text] * 20, vocab_size=300))
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    perfect = ids[1:] + [0]  # the prediction after token i is token i + 1
    start = text.rindex("17")
    assert pretrain._exact(ids, offsets, perfect, start, start + 2)
    last_digit = max(i for i, (a, b) in enumerate(offsets) if a < start + 2 and b > start)
    wrong = list(perfect)
    wrong[last_digit - 1] = tok.eos_token_id
    assert not pretrain._exact(ids, offsets, wrong, start, start + 2)
    assert pretrain._exact(ids, offsets, wrong, offsets[1][0], start - 1)  # the tokens before it are still right
