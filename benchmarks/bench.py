"""Training and evaluation throughput of d2lora_exp against plain TRL + PEFT, in one process and run.

    python benchmarks/bench.py                      # CUDA: 8B and 1B Llama architectures, seq 512 and 1024
    python benchmarks/bench.py --smoke              # CPU: the tiny model, a few steps (CI keeps it working)

Models have random weights (nothing is downloaded; speed does not depend on the values). For each method
(SFT, DPO, ORPO, LoRA r=16) it prints tokens/s, step time and peak GPU memory for d2lora_exp's trainer
path (the recipe's own TRL configs: bf16, SDPA, the config defaults) and for a plain TRL baseline (the
trainer given the model and a LoraConfig(r=16) with TRL's default arguments), the ratio between them, and
the model FLOP utilisation taking LoRA training as 4·N FLOPs per token (N = base parameters). Then GSM8K-style
evaluation throughput: batched greedy generation against one-by-one generation.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import string
import sys
import time
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from datasets import Dataset
from omegaconf import OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback

from d2lora_exp import adapters, tiny_model
from d2lora_exp.evaluation import generation
from d2lora_exp.methods import get_method

ARCHS = {
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0),
    "llama3-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
                      tie_word_embeddings=True),
    "tiny": {**tiny_model.ARCHS["tiny"], "vocab_size": 262},
}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16


def make_model(arch: str, device: str, dtype: torch.dtype, tokenizer) -> LlamaForCausalLM:
    config = LlamaConfig(**{**ARCHS[arch], "vocab_size": max(ARCHS[arch]["vocab_size"], len(tokenizer))},
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(n))


def make_rows(method: str, seq: int, n: int) -> Dataset:
    """Rows of exactly known byte length: prompt seq/4, answer(s) filling the rest (one token per byte)."""
    rng = random.Random(0)
    p = seq // 4
    if method == "sft":
        return Dataset.from_dict({"prompt": [_text(rng, p) for _ in range(n)],
                                  "completion": [_text(rng, seq - p - 2) for _ in range(n)]})
    return Dataset.from_dict({"prompt": [_text(rng, p) for _ in range(n)],
                              "chosen": [_text(rng, seq - p - 2) for _ in range(n)],
                              "rejected": [_text(rng, seq - p - 2) for _ in range(n)]})


class StepTimer(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def _plain_trl_trainer(method: str, model, tokenizer, rows, out: str, steps: int, batch: int, seq: int):
    """TRL's documented quick start: model + LoraConfig(r=16), default arguments except steps/batch/length."""
    from peft import LoraConfig

    peft_config = LoraConfig(r=16, lora_alpha=16, task_type="CAUSAL_LM")
    common = dict(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, max_length=seq,
                  report_to="none", save_strategy="no", use_cpu=not torch.cuda.is_available())
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        return SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=rows, processing_class=tokenizer,
                          peft_config=peft_config)
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer(model=model, args=DPOConfig(**common), train_dataset=rows, processing_class=tokenizer,
                          peft_config=peft_config)
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOTrainer(model=model, args=ORPOConfig(**common), train_dataset=rows, processing_class=tokenizer,
                       peft_config=peft_config)


def _ours_trainer(method: str, model, tokenizer, rows, out: str, steps: int, batch: int, seq: int, dtype):
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "method" / f"{method}.yaml")
    lora = OmegaConf.create({"r": 16, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"})
    peft_model = adapters.fresh(model, lora, seed=0)
    module = get_method(method)
    args = dict(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, max_length=seq, report_to="none",
                save_strategy="no", learning_rate=float(cfg.learning_rate), bf16=dtype == torch.bfloat16,
                use_cpu=not torch.cuda.is_available(), logging_steps=10**6, **OmegaConf.to_container(cfg.args))
    return module.build_trainer(peft_model, tokenizer, rows, module.make_config(args, cfg), cfg, [])


def bench_train(impl: str, method: str, arch: str, seq: int, steps: int, warmup: int, batch: int, device: str,
                dtype: torch.dtype, tokenizer) -> dict:
    model = make_model(arch, device, dtype, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    rows = make_rows(method, seq, batch * (steps + warmup))
    out = f"/tmp/d2lora_bench_{impl}_{method}"
    build = _ours_trainer if impl == "d2lora_exp" else _plain_trl_trainer
    trainer = build(method, model, tokenizer, rows, out, steps + warmup, batch, seq,
                    *([dtype] if impl == "d2lora_exp" else []))
    timer = StepTimer()
    trainer.add_callback(timer)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    timed = timer.times[warmup - 1 :] if warmup else [timer.times[0]] + timer.times
    step_s = (timed[-1] - timed[0]) / max(1, len(timed) - 1)
    seqs_per_step = batch * (1 if method == "sft" else 2)
    tokens_s = seqs_per_step * seq / step_s
    result = {"impl": impl, "method": method, "arch": arch, "seq": seq, "batch": batch, "params": n_params,
              "step_s": round(step_s, 4), "tokens_per_s": round(tokens_s, 1),
              "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None}
    peak = next((v for k, v in PEAK_TFLOPS.items() if torch.cuda.is_available() and k in torch.cuda.get_device_name()), None)
    result["mfu"] = round(tokens_s * 4 * n_params / (peak * 1e12), 4) if peak else None
    del trainer, model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def bench_eval(arch: str, device: str, dtype: torch.dtype, tokenizer, questions: int, single: int,
               max_new_tokens: int, batch: int) -> dict:
    model = make_model(arch, device, dtype, tokenizer)
    model.generation_config.eos_token_id = None  # random weights: always generate max_new_tokens (worst case)
    rng = random.Random(0)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": _text(rng, rng.randint(150, 400))}],
                                             tokenize=False, add_generation_prompt=True) for _ in range(questions)]
    t = time.perf_counter()
    generation.generate(model, tokenizer, prompts, batch, max_new_tokens, "bench batched")
    batched_s = time.perf_counter() - t
    t = time.perf_counter()
    for p in prompts[:single]:
        generation.generate(model, tokenizer, [p], 1, max_new_tokens, "bench single")
    single_s = (time.perf_counter() - t) / single * questions
    del model
    gc.collect()
    return {"arch": arch, "questions": questions, "max_new_tokens": max_new_tokens, "batch": batch,
            "batched_s": round(batched_s, 2), "questions_per_s": round(questions / batched_s, 2),
            "one_by_one_s_extrapolated": round(single_s, 2), "speedup": round(single_s / batched_s, 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, a few steps")
    parser.add_argument("--archs", default="llama3-8b,llama3-1b")
    parser.add_argument("--seqs", default="512,1024")
    parser.add_argument("--methods", default="sft,dpo,orpo")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--eval-questions", type=int, default=1319)
    parser.add_argument("--eval-single", type=int, default=8, help="questions generated one by one (extrapolated)")
    parser.add_argument("--eval-batch", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.archs, args.seqs, args.steps, args.warmup_steps, args.batch = "tiny", "128", 2, 1, 2
        args.eval_questions, args.eval_single, args.eval_batch, args.max_new_tokens = 8, 2, 8, 16
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = tiny_model.build_tokenizer()
    env = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
           "dtype": str(dtype), "python": sys.version.split()[0]}
    for lib in ("transformers", "peft", "trl"):
        env[lib] = __import__(lib).__version__
    print(json.dumps(env))
    results = {"env": env, "train": [], "eval": []}
    for arch in args.archs.split(","):
        for seq in map(int, args.seqs.split(",")):
            for method in args.methods.split(","):
                pair = {impl: bench_train(impl, method, arch, seq, args.steps, args.warmup_steps, args.batch, device,
                                          dtype, tokenizer) for impl in ("plain_trl", "d2lora_exp")}
                ratio = pair["d2lora_exp"]["tokens_per_s"] / pair["plain_trl"]["tokens_per_s"]
                for r in pair.values():
                    results["train"].append({**r, "ratio_vs_plain_trl": round(ratio, 3)})
                    print(f"{arch:10s} seq {seq:5d} {method:5s} {r['impl']:11s} {r['tokens_per_s']:>10,.0f} tok/s "
                          f"{r['step_s']:.3f} s/step  peak {r['peak_mem_gib']} GiB  MFU {r['mfu']}")
                print(f"{arch:10s} seq {seq:5d} {method:5s} d2lora_exp / plain TRL = {ratio:.2f}x")
        ev = bench_eval(arch, device, dtype, tokenizer, args.eval_questions, args.eval_single, args.max_new_tokens,
                        args.eval_batch)
        results["eval"].append(ev)
        print(f"{arch:10s} eval: {ev['questions']} questions x {ev['max_new_tokens']} new tokens in {ev['batched_s']} s "
              f"({ev['questions_per_s']} q/s); one by one ~{ev['one_by_one_s_extrapolated']} s; {ev['speedup']}x")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
