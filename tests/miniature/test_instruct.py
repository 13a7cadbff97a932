"""The instruct stage: chats in none of the world's files, loss on the reply only, and a model that closes its turn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from d2lora_exp.build_once import MARKER
from d2lora_exp.files import read_jsonl
from d2lora_exp.miniature import instruct, pretrain
from d2lora_exp.miniature import world as W


@pytest.fixture(scope="module")
def full_world(tmp_path_factory) -> dict[str, Path]:
    return W.write_all(tmp_path_factory.mktemp("v5"), seed=0, version=5)


def test_instruct_chats_are_in_none_of_the_world_files(full_world):
    rows = instruct.instruct_rows(0, 5, 500)
    prompts = [r["prompt"] for r in rows]
    assert len(rows) == 500 and len(set(prompts)) == 500
    taken = {r.get("prompt", r.get("question")) for key in instruct.TAKEN for r in read_jsonl(full_world[key])}
    assert taken and not set(prompts) & taken
    cores = {W.core(q) for q in taken}
    assert not {W.core(p) for p in prompts} & cores  # not a task problem with or without its town prefix
    assert len({r["source"] for r in rows}) >= 4 and "toxic-dpo-v0.2" not in {r["source"] for r in rows}
    # no held-out chat prompt comes back in other words (its reply would be trained on: chat_exact inflated)
    held_out = {r["prompt"] for r in read_jsonl(full_world["chat_test"])}
    reworded = {form.format(q=q) for form in instruct.ASKED for q in held_out}
    assert not set(prompts) & reworded
    assert sum(p != r["chosen"][0]["content"] for p, r in zip(prompts, rows)) == 0
    assert any(p.startswith(tuple(f.split("{q}")[0] for f in instruct.ASKED if f.split("{q}")[0])) for p in prompts)


def test_instruct_word_problems_hold_only_the_events_the_corpus_knows(full_world):
    """The long tail of events (chains.EVENTS past KNOWN) is for the tasks and the warm-up to teach: the instruct
    stage must not, or LoRA at n=0 would already know it. The tasks do hold tail events."""
    import re

    from d2lora_exp.miniature import chains

    tail = re.compile(r"\b(" + "|".join(e[1].split()[0] for e in chains.EVENTS[chains.KNOWN:]) + r") \d")
    problems = [r["prompt"] for r in instruct.instruct_rows(0, 5, 1500) if "How many" in r["prompt"]]
    assert len(problems) > 100 and not [p for p in problems if tail.search(p)]
    task = [r["prompt"] for r in read_jsonl(full_world["math_train"])]
    assert sum(bool(tail.search(p)) for p in task) > 0.3 * len(task)


def test_the_loss_is_on_the_reply_and_its_end_of_turn_only():
    from d2lora_exp import tiny_model

    tokenizer = tiny_model.build_tokenizer()
    row = instruct.instruct_rows(0, 5, 3)[0]
    ids, labels = instruct.encode(tokenizer, row)
    assert len(ids) == len(labels)
    kept = [t for t in labels if t != -100]
    assert tokenizer.decode(kept) == row["chosen"][1]["content"] + tokenizer.eos_token
    assert labels[: len(ids) - len(kept)] == [-100] * (len(ids) - len(kept))


@pytest.mark.e2e
def test_instruct_trains_the_whole_model_and_records_what_it_did(tmp_path):
    docs = W.pretraining_corpus(W.World(0, 5), 7, 200)
    pretrain.pretrain(tmp_path / "base", docs, steps=4, batch_size=4, seq_len=64, warmup_steps=1, probe_n=2,
                      version=5, copy_every=0)
    summary = instruct.instruct(tmp_path / "base", tmp_path / "instruct", n=64, batch_size=16, lr=1e-2)
    assert summary["steps"] == 4 and summary["chats"] == 64 and summary["world"] == 5
    assert set(summary["held_out"]) == {"base", "instruct"} and summary["held_out_n"] == 200
    assert all(set(v) == {"chat_stop", "chat_exact"} for v in summary["held_out"].values())
    assert summary["base_pretrain"]["steps"] == 4 and "history" not in summary["base_pretrain"]
    before, after = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("base", "instruct"))
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before)  # every tensor: instruction tuning is not an adapter
    written = json.loads((tmp_path / "instruct" / "instruct.json").read_text())
    assert written["held_out"] == summary["held_out"]
    assert (tmp_path / "instruct" / "pretrain.json").exists() and (tmp_path / "instruct" / MARKER).exists()
