"""The miniature world's instruct stage: the pretrained base model learns the chat format, as Llama-3.1 was
instruction-tuned before the paper warmed it up.

Why: the paper warms up an *Instruct* model, so its warm-up is more general SFT on top of a model that already
chats. The world v3 base model never saw the chat template, so its warm-up doubled as instruction tuning
(chat_stop 0 -> 78%) and its LoRA runs started from a model that could not close a turn. This stage trains the
whole model (as instruction tuning does, not an adapter) on chat exchanges of the warm-up's kinds whose prompts are
in none of the world's files: not the warm-up, not the held-out chat prompts, not a task.

    python -m d2lora_exp.miniature.instruct --base PRETRAINED_DIR --world 5 [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch

from .. import chat
from ..build_once import build_once
from ..files import read_jsonl
from . import world as W

TAKEN = ("warmup", "chat_test", "math_train", "math_validation", "gsm8k_test")


def world_files(seed: int, version: int) -> dict[str, list[dict]]:
    """The rows of the full world's files the instruct stage must stay out of (TAKEN), written once to a temporary dir;
    pretrain.tokenizer_texts reads its training files (warm-up, math pool) from here too."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = W.write_all(Path(tmp), seed=seed, version=version)
        return {key: read_jsonl(paths[key]) for key in TAKEN}


def instruct_rows(seed: int, version: int, n: int, files: dict[str, list[dict]] | None = None) -> list[dict]:
    """`n` chats (warm-up schema) whose prompts are in no file of the full world (warm-up, chat test, tasks; the
    world at its default sizes, the one the shipped model serves). The world's facts are asked, in other words, as
    the warm-up asks them in their plain form: ARC's questions are those facts, so, as after v3's warm-up, ARC at
    n=0 measures a model that was asked them (the forgetting comparison is between inits on the same model).
    `files`: world_files(seed, version), when the caller has them already."""
    files = files or world_files(seed, version)
    taken = {r.get("prompt", r.get("question")) for rows in files.values() for r in rows}
    held_out = {r["prompt"] for r in files["chat_test"]}
    world = W.World(seed, version)
    out, seen, rng = [], set(taken), random.Random(f"instruct-{seed}")
    for row in W.warmup_rows(world, seed, 8 * n, exclude=taken, toxic=0.0, name="instruct", known_only=True):
        if row["prompt"] in seen and row["source"] in REWORDED:
            row = _asked_otherwise(row, seen, rng, held_out)
        if row["prompt"] not in seen:
            seen.add(row["prompt"])
            out.append(row)
            if len(out) == n:
                return out
    raise ValueError(f"could not draw {n} instruct chats outside the world's {len(taken)} prompts")


# The world has a few hundred facts and word tasks, and the warm-up and the held-out chat prompts ask nearly all of
# them in their plain form; instruction data asks the same things in other words (as real instruction sets and the
# real warm-up mix overlap in knowledge, not in prompts), so every kind keeps its share of the warm-up's mix.
REWORDED = ("truthy-dpo-v0.1", "capybara", "airoboros-3.2", "evol_instruct")
ASKED = ("Please answer: {q}", "Quick question: {q}", "I wonder: {q}", "Do you know this? {q}", "Tell me: {q}",
         "{q} Answer briefly.")


def _asked_otherwise(row: dict, seen: set[str], rng: random.Random, held_out: set[str]) -> dict:
    """The row with its question put in other words not yet used (unchanged if every form is taken). A held-out chat
    prompt is never reworded: its reply would be trained on, and the `chat` evaluator's chat_exact inflated."""
    if row["prompt"] in held_out:
        return row
    for form in rng.sample(ASKED, len(ASKED)):
        prompt = form.format(q=row["prompt"])
        if prompt not in seen:
            user = {"content": prompt, "role": "user"}
            return {**row, "prompt": prompt, "question": prompt, "chosen": [user, row["chosen"][1]],
                    "rejected": [user, row["rejected"][1]]}
    return row


def encode(tokenizer, row: dict) -> tuple[list[int], list[int]]:
    """Token ids of the chosen conversation and its labels: the reply and its end-of-turn only (-100 elsewhere)."""
    prompt = chat.user_prompt(tokenizer, row["prompt"])
    full = tokenizer.apply_chat_template(row["chosen"], tokenize=False)  # ends with the reply's end of turn
    if not full.startswith(prompt):
        raise ValueError("the chat template must render the prompt as a prefix of the conversation")
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    return ids, [-100] * len(p_ids) + ids[len(p_ids):]


@torch.no_grad()
def replies(model, tokenizer, rows: list[dict], max_new_tokens: int = 64) -> dict[str, float]:
    """The `chat` evaluator's two numbers on held-out prompts: `chat_stop`, the share (%) of greedy replies the model
    closes itself, and `chat_exact`, the share equal to the chosen reply.

    Why both: a byte-level base model runs past 64 tokens (chat_stop ~1%), so closing a turn was the instruct stage's
    visible effect; a word-level base (world v5) often ends a "document" within 64 tokens (chat_stop 57%), with
    world prose, not an answer, so `chat_exact` shows that it now answers."""
    from ..evaluation import generation
    from ..evaluation.chat import reference

    stopped: list[bool] = []
    outputs = generation.generate(model, tokenizer, [chat.user_prompt(tokenizer, r["prompt"]) for r in rows], 64,
                                  max_new_tokens, "instruct probe", stopped=stopped)
    exact = [o.strip() == reference(r["chosen"]).strip() for o, r in zip(outputs, rows)]
    pct = lambda xs: round(100.0 * sum(xs) / len(xs), 1)
    return {"chat_stop": pct(stopped), "chat_exact": pct(exact)}


def instruct(base: Path, out_dir: Path, seed: int = 0, version: int = 5, n: int = 4000, epochs: int = 1,
             batch_size: int = 32, lr: float = 1e-3) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    files = world_files(seed, version)
    rows, held_out = instruct_rows(seed, version, n, files), files["chat_test"]
    model.eval()
    before = replies(model, tokenizer, held_out)
    examples = [encode(tokenizer, r) for r in rows]
    steps = epochs * math.ceil(len(examples) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    gen, history, step = torch.Generator().manual_seed(seed), [], 0
    model.train()
    for _ in range(epochs):
        for b in torch.randperm(len(examples), generator=gen).split(batch_size):
            batch = [examples[i] for i in b.tolist()]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([i + [tokenizer.pad_token_id] * (width - len(i)) for i, _ in batch])
            labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
            mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            schedule.step()
            step += 1
            if step % 25 == 0 or step == steps:
                history.append({"step": step, "loss": round(loss.item(), 4)})
                print(f"instruct step {step}/{steps} loss {loss.item():.3f}", flush=True)
    model.eval()
    pretrained = Path(base) / "pretrain.json"
    base_pretrain = json.loads(pretrained.read_text()) if pretrained.exists() else None
    if base_pretrain:
        base_pretrain.pop("history", None)
    summary = {"seed": seed, "world": version, "chats": len(rows), "epochs": epochs, "batch_size": batch_size,
               "lr": lr, "steps": steps, "held_out": {"base": before, "instruct": replies(model, tokenizer, held_out)},
               "held_out_n": len(held_out),
               "base_pretrain": base_pretrain, "seconds": round(time.perf_counter() - start, 1), "history": history}
    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if pretrained.exists():
            shutil.copy2(pretrained, tmp / "pretrain.json")
        (tmp / "instruct.json").write_text(json.dumps(summary, indent=2))

    build_once(Path(out_dir), json.dumps({k: v for k, v in summary.items() if k != "history"}, sort_keys=True), save)
    Path(out_dir).chmod(0o755)
    return summary


DEFAULT_OUT = Path(__file__).resolve().parents[1] / "bundled" / "models" / "tiny-world-v5"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Instruction-tune a pretrained miniature base model (CPU, minutes).")
    parser.add_argument("--base", type=Path, required=True, help="the pretrained model (miniature.pretrain --out)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world", type=int, default=5, choices=W.VERSIONS)
    parser.add_argument("--chats", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    summary = instruct(args.base, args.out, seed=args.seed, version=args.world, n=args.chats, epochs=args.epochs,
                       lr=args.lr)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("history", "base_pretrain")}, indent=2))


if __name__ == "__main__":
    main()
