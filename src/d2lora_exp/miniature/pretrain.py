"""Pretrain the miniature world's base model: a ~1M-parameter Llama on the world's plain-text corpus.

A randomly initialised model can only show the machinery; a model that already "knows" the world's
facts and arithmetic (but not the chat format or the tasks' answer conventions) lets warm-up and
adaptation show real effects in minutes on a CPU. `make tiny-model` runs this with a fixed seed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

from .. import tiny_model
from ..build_once import build_once


def token_stream(tokenizer, docs: list[str]) -> torch.Tensor:
    """All documents as one stream, each followed by EOS, so windows can start anywhere."""
    ids: list[int] = []
    for doc in docs:
        ids += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return torch.tensor(ids, dtype=torch.long)


@torch.no_grad()
def probe(model, tokenizer, seed: int = 0, n: int = 100, version: int = 3) -> dict[str, float]:
    """What the base model knows in plain text, before any chat: greedy accuracy (%) on fresh arithmetic
    lines ("7 + 5 ="), fact quizzes ("Question: ...\nAnswer:") and word problems (the last number of the
    prose solution it writes). The tasks need all three; this says which one a base model lacks."""
    import random
    import re

    from ..evaluation import generation
    from . import world as W

    w, rng = W.World(seed, version), random.Random(f"probe-{seed}")

    def complete(prompts: list[str], max_new_tokens: int) -> list[str]:
        """First line of each greedy plain-text continuation (batched, as evaluation generates)."""
        outputs = generation.generate(model, tokenizer, prompts, 64, max_new_tokens, "probe")
        return [o.split("\n")[0].strip() for o in outputs]

    arith = [W._arith(rng) for _ in range(n)]
    arith_out = complete([f"{a} {op} {b} =" for a, op, b, _ in arith], 4)
    arith_ok = [o.split()[:1] == [str(r)] for o, (_, _, _, r) in zip(arith_out, arith)]
    facts = rng.sample(w.facts(), min(n, len(w.facts())))
    quiz_out = complete([f"Question: {f.question}\nAnswer:" for f in facts], 12)
    quiz_ok = [o == f.answer for o, f in zip(quiz_out, facts)]
    problems = [W._problem(w, rng) for _ in range(n)]
    solved = []
    for p, out in zip(problems, complete([p.question for p in problems], 90 if version < 5 else 240)):
        numbers = re.findall(r"\d+", out)
        solved.append(bool(numbers) and numbers[-1] == str(p.answer))
    pct = lambda xs: round(100.0 * sum(xs) / len(xs), 1)
    return {"arithmetic": pct(arith_ok), "quiz": pct(quiz_ok), "word_problems": pct(solved), "n": n,
            **copy_probe(model, tokenizer, seed, n, version)}


def _teacher_forced(model, tokenizer, text: str):
    """The text's token ids, their character offsets, and the model's argmax prediction after each token."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    predicted = model(input_ids=torch.tensor([ids])).logits[0].argmax(-1).tolist()
    return ids, enc["offset_mapping"], predicted


def _exact(ids: list[int], offsets: list[tuple[int, int]], predicted: list[int], start: int, end: int) -> bool:
    """Teacher-forced: every token overlapping characters [start, end) is the argmax prediction made at the token
    before it (one token per byte with the byte tokenizer; " 17" is one token with a word tokenizer)."""
    tokens = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
    return bool(tokens) and tokens[0] > 0 and all(predicted[i - 1] == ids[i] for i in tokens)


@torch.no_grad()
def copy_probe(model, tokenizer, seed: int = 0, n: int = 100, version: int = 3) -> dict[str, float]:
    """Teacher-forced: share (%) of the numbers in freshly drawn worked solutions that the model predicts exactly (every
    digit, given the true text before it), by kind: `copy_restate` (inside a span quoted from the question, world v5),
    `copy_operand` (an equation's operand), `computed` (an equation's result) and `copy_recall` (in sentences repeated
    verbatim: whether the model copies from its context at all).

    Why: world v4's base model computed 92% of the results right but predicted only 25% of the question's numbers
    inside a solution; a model that cannot copy cannot solve any problem, whatever it adds. This separates the two."""
    import random
    import re

    from . import world as W

    w, rng = W.World(seed, version), random.Random(f"copy-probe-{seed}")
    hits: dict[str, list[bool]] = {"copy_restate": [], "copy_operand": [], "computed": []}
    for _ in range(n):
        p = W._problem(w, rng)
        solution = W.worked_solution(rng, p)
        ids, offsets, predicted = _teacher_forced(model, tokenizer, f"{p.question} {solution}")
        base = len(p.question) + 1
        equations = [(m.start(), m.end()) for m in re.finditer(r"\d+ [-+*] \d+ = \d+", solution)]
        quoted = [(solution.index(c), solution.index(c) + len(c)) for c in p.clauses if c in solution]
        for m in re.finditer(r"\d+", solution):
            a, b = m.span()
            eq = next(((s, e) for s, e in equations if s <= a < e), None)
            if eq:
                kind = "computed" if solution[eq[0]:a].rstrip().endswith("=") else "copy_operand"
            elif any(s <= a < e for s, e in quoted):
                kind = "copy_restate"
            else:
                continue  # the closing sentence's total: neither copied nor an equation's result
            hits[kind].append(_exact(ids, offsets, predicted, base + a, base + b))
    # `copy_recall`: the numbers of sentences repeated verbatim (chains.recall_doc), the plainest in-context copy
    from . import chains

    hits["copy_recall"] = []
    for _ in range(n):
        doc = chains.recall_doc(w, rng)
        ids, offsets, predicted = _teacher_forced(model, tokenizer, doc)
        base = doc.index("\n") + 1
        for m in re.finditer(r"\d+", doc[base:]):
            a, b = m.span()
            hits["copy_recall"].append(_exact(ids, offsets, predicted, base + a, base + b))
    return {k: round(100.0 * sum(v) / len(v), 1) for k, v in hits.items() if v}


def pretrain(out_dir: Path, docs: list[str], seed: int = 0, steps: int = 600, batch_size: int = 32,
             seq_len: int = 256, lr: float = 3e-3, warmup_steps: int = 50, log_every: int = 25,
             probe_n: int = 100, version: int = 3, copy_every: int = 300, tokenizer_kind: str | None = None,
             vocab_size: int = 1024, tokenizer_texts: list[str] | None = None) -> dict:
    """Pretrain from random weights on `docs`; a word tokenizer (`tokenizer_kind`) learns its merges from `docs` and
    `tokenizer_texts`. Written to `out_dir` whole or not at all; returns the summary that pretrain.json holds."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer_kind = tokenizer_kind or DEFAULT_TOKENIZER[version]
    tokenizer = (tiny_model.build_tokenizer() if tokenizer_kind == "byte"
                 else tiny_model.train_word_tokenizer(docs + list(tokenizer_texts or []), vocab_size))
    model = LlamaForCausalLM(tiny_model.config(tokenizer, "world"))
    stream = token_stream(tokenizer, docs)
    held = max(seq_len, min(20_000, len(stream) // 10))  # 20,000 tokens of a full corpus; a tenth of a small one
    held_out, train = stream[-held:], stream[:-held]
    if len(train) <= seq_len + 1:
        raise ValueError(f"{len(stream)} tokens of documents: too few for windows of {seq_len} and a held-out part")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup_steps) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    history, start = [], time.perf_counter()
    model.train()
    for step in range(steps):
        starts = torch.randint(0, len(train) - seq_len - 1, (batch_size,), generator=gen)
        batch = torch.stack([train[s : s + seq_len] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        if step % log_every == 0 or step == steps - 1:
            elapsed = time.perf_counter() - start
            tok_s = (step + 1) * batch_size * seq_len / elapsed
            history.append({"step": step, "loss": round(loss.item(), 4), "tokens_per_s": round(tok_s)})
            print(f"pretrain step {step + 1}/{steps} loss {loss.item():.3f} {tok_s:,.0f} tok/s "
                  f"eta {elapsed / (step + 1) * (steps - step - 1):.0f}s", flush=True)
        if copy_every and (step + 1) % copy_every == 0 and step + 1 < steps:  # when copying forms (a phase change)
            model.eval()
            history.append({"step": step, "copy_probe": copy_probe(model, tokenizer, seed, probe_n, version)})
            print(f"pretrain step {step + 1}/{steps} copy probe {history[-1]['copy_probe']}", flush=True)
            model.train()
    model.eval()
    with torch.no_grad():
        windows = held_out[: (len(held_out) // seq_len) * seq_len].view(-1, seq_len)
        held_loss = float(model(input_ids=windows, labels=windows).loss)
    model.generation_config = tiny_model.generation_config(tokenizer)
    probed = probe(model, tokenizer, seed, probe_n, version)
    summary = {"seed": seed, "world": version, "tokenizer": tokenizer_kind, "vocab_size": len(tokenizer), "steps": steps,
               "batch_size": batch_size, "seq_len": seq_len, "lr": lr,
               "parameters": sum(p.numel() for p in model.parameters()), "train_tokens": int(len(train)),
               "tokens_seen": steps * batch_size * seq_len, "held_out_loss": round(held_loss, 4),
               "seconds": round(time.perf_counter() - start, 1), "probe": probed, "history": history}

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "pretrain.json").write_text(json.dumps(summary, indent=2))

    # Written whole or not at all (build_once): the stamp is this run's summary, so an earlier model in
    # `out_dir` is replaced, never mixed with this one, and COMPLETE.json records every file's digest.
    out_dir = Path(out_dir)
    build_once(out_dir, json.dumps({k: v for k, v in summary.items() if k != "history"}, sort_keys=True), save)
    out_dir.chmod(0o755)  # mkdtemp makes it private; a shipped model must be readable by everyone
    return summary


DEFAULT_OUT = Path(__file__).resolve().parents[1] / "bundled" / "models" / "tiny-world-llama"
# World v5's pretrained base is not shipped: the instruct stage (instruct.py) turns it into the shipped model.
DEFAULT_OUT_V5 = Path("outputs/miniature/tiny-world-v5-base")
# v5: 1,500 steps of word-level tokens (~11 epochs of its corpus): copy_restate 89% at 600, 93% at the end; the
# byte-level runs plateaued at 44-61% after 3,000 steps (docs/miniature/world-v5.md).
DEFAULT_STEPS = {3: 1800, 5: 1500}
# v5: words and numbers are single tokens (tiny_model.train_word_tokenizer): the byte-level v5 base never learnt to
# copy a number after a multi-byte key (docs/miniature/world-v5.md).
DEFAULT_TOKENIZER = {3: "byte", 5: "word"}


def tokenizer_texts(seed: int, version: int) -> list[str]:
    """The texts of the world's training files (the warm-up chats, the math pool's problems and solutions), none
    held out, for a word tokenizer to learn its merges from beside the corpus.

    Why: the corpus never writes the tasks' conventions ("Step 1:", "The answer is:"), so a tokenizer trained on it
    alone splits "Step" and "answer" into pieces, and a model fine-tuned on 100 examples spells them "Sirstp" and
    "ansF" (measured). Llama's tokenizer has its users' words; this one has its world's, answers not included
    (merges are not labels)."""
    from .instruct import world_files

    files = world_files(seed, version)
    chats = [m["content"] for r in files["warmup"] for m in r["chosen"] + r["rejected"][1:]]
    math = [t for r in files["math_train"] for t in (r["prompt"], r["full_chosen"], r["full_rejected"])]
    return chats + math


def main(argv: list[str] | None = None) -> None:
    from . import world

    parser = argparse.ArgumentParser(description="Pretrain the miniature world's base model (CPU, minutes).")
    parser.add_argument("--out", type=Path, help=f"default {DEFAULT_OUT} (world 3), {DEFAULT_OUT_V5} (world 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world", type=int, default=3, choices=world.VERSIONS)
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--steps", type=int, help=f"default {DEFAULT_STEPS} by world")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--tokenizer", choices=("byte", "word"), help=f"default {DEFAULT_TOKENIZER} by world")
    parser.add_argument("--copy-every", type=int, default=300, help="copy probe every N steps (0: only at the end)")
    parser.add_argument("--probe", type=Path, metavar="MODEL_DIR", help="only probe a pretrained model and print it")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.probe:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(args.probe)
        print(json.dumps(probe(model, AutoTokenizer.from_pretrained(args.probe), args.seed, version=args.world)))
        return
    out = args.out or (DEFAULT_OUT if args.world == 3 else DEFAULT_OUT_V5)
    docs = world.pretraining_corpus(world.World(args.seed, args.world), args.seed, args.docs)
    kind = args.tokenizer or DEFAULT_TOKENIZER[args.world]
    summary = pretrain(out, docs, seed=args.seed, steps=args.steps or DEFAULT_STEPS[args.world],
                       batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr, version=args.world,
                       copy_every=args.copy_every, tokenizer_kind=kind,
                       tokenizer_texts=tokenizer_texts(args.seed, args.world) if kind == "word" else None)
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
