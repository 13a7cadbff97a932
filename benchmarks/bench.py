"""d2lora_exp against plain TRL + PEFT, like for like, and the counts that decide speed on any hardware.

    python benchmarks/bench.py                 # CUDA: 8B and 1B Llama shapes (random weights), the paper's settings
    python benchmarks/bench.py --smoke         # CPU: the tiny model, a few steps (CI keeps it working)
    python benchmarks/bench.py --archs tiny,world --threads 1    # the CPU figures of RESULTS.md (about 26 min)

Both sides get the same model (a random-weight Llama of the chosen shape, built from one seed), the same LoRA
(the project's `lora` config: r=16, alpha=16, dropout 0.05, all linear layers), the same batch and gradient
accumulation, max_length and rows: the paper preset's math training rows as the project builds them (its task,
chat template, over-long policy) from a pool whose lengths follow GSM8K (workload.py). Only the project's own
choices differ: plain TRL is the trainer given the model and that LoraConfig with TRL's default arguments (fp32 on
CPU, bf16 on CUDA, as the project); the project side runs its adaptation path (start adapter, TRL config from the
composed Hydra config, callbacks, training.train). Variants of the project add one TRL option each
(length-grouped batches, padding-free batching, a DPO reference pass at every step instead of precomputed log-probs).

Printed and written (--out): tokens/s (real, non-padding tokens) and its ratio to plain TRL, paired per pass;
peak CUDA memory and MFU (GPU only); decoder forward passes per micro-batch (DPO: the reference's; gradient
checkpointing's recomputation shows in the first layer's count); the padding share of training batches at batch 4
and 16, padded / length-grouped / padding-free, on GSM8K-like and the miniature world's rows; and evaluation through
the project's evaluation phase with a LoRA adapter attached at the configured batch: seconds, decode slots per reply
token (a batch decodes until its longest reply ends) and the padding shares of prompts and ARC-Easy scoring.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.trainer_callback import PrinterCallback, ProgressCallback

import meters
import workload
from d2lora_exp import adapters, modeling, tiny_model, training
from d2lora_exp.config import config_dir
from d2lora_exp.phases import adapt, evaluate
from d2lora_exp.phases.prepare import Plan, prepare

LLAMA3 = dict(num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0, vocab_size=128256)
ARCHS: dict[str, dict[str, Any]] = {
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, **LLAMA3),
    "llama3-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                      tie_word_embeddings=True, **LLAMA3),
    # The project's own shapes keep their byte-level vocabulary (vocab_size None: the tokenizer's size).
    "tiny": {**tiny_model.ARCHS["tiny"], "max_position_embeddings": 8192, "vocab_size": None},
    "world": {**tiny_model.ARCHS["world"], "max_position_embeddings": 8192, "vocab_size": None},
}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16 tensor-core peaks
METHODS = ("sft", "dpo", "orpo")
# The project's speed options each method's TRL trainer takes (TRL 1.16): DPO's padding_free is switched off by TRL
# itself ("temporarily unavailable after a refactor") and ORPOConfig has none. DPO's reference log-probs are
# precomputed by default (method.precompute_ref=auto); `every_step_ref` is the former default, a reference pass per step.
VARIANTS = {"sft": ("group_by_length", "padding_free"), "dpo": ("group_by_length", "every_step_ref"),
            "orpo": ("group_by_length",)}
NOT_AVAILABLE = {("dpo", "padding_free"): "TRL 1.16 DPOTrainer turns padding_free off (temporarily unavailable)",
                 ("orpo", "padding_free"): "TRL 1.16 ORPOConfig has no padding_free"}


@dataclasses.dataclass
class Workload:
    root: Path
    model_dir: Path
    tokenizer: Any
    replies: dict[str, int]
    files: dict[str, Path]
    arch: str


def build_workload(root: Path, arch: str, pool_rows: int, eval_limit: int | None) -> Workload:
    """The model directory (config and tokenizer: what `prepare` reads; weights are built in memory) and the data."""
    tokenizer = workload.bench_tokenizer()
    model_dir = root / f"model-{arch}"
    shape = {**ARCHS[arch], "vocab_size": ARCHS[arch]["vocab_size"] or len(tokenizer)}
    LlamaConfig(**shape, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    gsm8k, replies = workload.gsm8k_test_rows(eval_limit)
    files = {"math_train": workload.write_jsonl(root / "data" / "math_train.jsonl", workload.step_dpo_rows(pool_rows)),
             "gsm8k_test": workload.write_jsonl(root / "data" / "gsm8k_test.jsonl", gsm8k),
             "arc_easy_test": workload.write_jsonl(root / "data" / "arc_easy_test.jsonl", workload.arc_rows(eval_limit))}
    return Workload(root, model_dir, tokenizer, replies, files, arch)


def compose_cfg(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def make_plan(work: Workload, method: str, data_size: int, args: argparse.Namespace, out: Path,
              train: dict[str, Any] | None = None) -> Plan:
    """The paper preset's run on the bench's model and data, as `python -m d2lora_exp experiment=paper ...` plans it."""
    cfg = compose_cfg(["experiment=paper", f"method={method}", f"device={args.device}", f"data_size={data_size}",
                       "wandb.mode=disabled", "eval.evaluators=[task,arc_easy]", *args.override])
    with open_dict(cfg):
        cfg.model.name_or_path, cfg.model.gated, cfg.model.attn_implementation = str(work.model_dir), False, args.attn
        cfg.model.name = f"bench-{work.arch}"
        for key in ("math_train", "gsm8k_test", "arc_easy_test"):
            cfg.data[key] = {"path": str(work.files[key])}
        cfg.paths.cache_dir, cfg.paths.output_dir = str(out / "cache"), str(out)
        for key, value in (train or {}).items():
            cfg.train[key] = value
    out.mkdir(parents=True, exist_ok=True)
    return prepare(cfg, out)


def make_model(plan: Plan, arch: str) -> LlamaForCausalLM:
    """Random weights from seed 0 on the run's device and dtype: both sides train the very same model."""
    config = LlamaConfig.from_pretrained(plan.model_source)
    config._attn_implementation = plan.cfg.model.attn_implementation
    default = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.set_default_dtype(plan.dtype)  # built in bf16 on CUDA: an 8B model never exists in fp32
        try:
            with torch.device(plan.device):
                model = LlamaForCausalLM(config)
        finally:
            torch.set_default_dtype(default)
    return model


def non_embedding_params(plan: Plan) -> int:
    """N in the 4N training FLOPs per token of a frozen base (forward 2N, input gradients 2N): every weight a token
    passes through, the LM head included, the input embedding (a lookup) not. Counted on the meta device."""
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig.from_pretrained(plan.model_source))
    embed = model.get_input_embeddings().weight
    return sum(p.numel() for p in model.parameters() if p is not embed or model.config.tie_word_embeddings)


# --- trainers -----------------------------------------------------------------------------------------------------


def plain_trl(plan: Plan, model, project_args, out: Path, checkpointing: bool | None = None):
    """TRL's quick start: the model and a LoraConfig (the project's, so the targets are the same), TRL's default
    arguments except what must match the project's run `project_args` (steps, batch, accumulation, max_length, seed,
    precision), on the project's rows. `checkpointing=False` turns off TRL's default activation checkpointing (the
    `plain_trl+no_checkpointing` baseline: what is left between it and the project is the project's other choices)."""
    method, cfg = plan.cfg.method.name, plan.cfg
    common = dict(output_dir=str(out), max_steps=project_args.max_steps, seed=project_args.seed,
                  per_device_train_batch_size=project_args.per_device_train_batch_size,
                  gradient_accumulation_steps=project_args.gradient_accumulation_steps, max_length=int(cfg.train.max_length),
                  report_to="none", save_strategy="no", use_cpu=project_args.use_cpu, bf16=project_args.bf16,
                  disable_tqdm=True, **({} if checkpointing is None else {"gradient_checkpointing": checkpointing}))
    kwargs = dict(model=model, train_dataset=plan.train_rows, processing_class=plan.tokenizer,
                  peft_config=adapters.lora_config(cfg.lora))
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        return SFTTrainer(args=SFTConfig(**common), **kwargs)
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer(args=DPOConfig(**common), **kwargs)
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOTrainer(args=ORPOConfig(**common), **kwargs)


def variant_args(method: str, variant: str) -> dict[str, Any]:
    """The TRL arguments a variant adds to the project's configured run (what a user would put in method.args)."""
    if variant == "group_by_length":
        # Without input_ids in the rows (DPO, ORPO) the sampler reads a `length` column, which only survives the
        # Trainer's unused-column removal when that is off; TRL's collators ignore the extra columns.
        return {"train_sampling_strategy": "group_by_length", **({} if method == "sft" else {"remove_unused_columns": False})}
    if variant == "padding_free":
        # TRL refuses max_length with padding_free (it cannot cut a flattened batch); the project has already
        # enforced max_length on the rows (train.overlong), so nothing longer reaches TRL.
        return {"padding_free": True, "max_length": None}
    if variant == "every_step_ref":
        return {"precompute_ref_log_probs": False}
    if variant == "default":
        return {}
    raise ValueError(f"unknown variant {variant!r}")


def variant_rows(plan: Plan, variant: str):
    """The plan's rows; for length grouping of preference rows, with the `length` the sampler groups by: prompt +
    longer answer, the width a pair is padded to (the project's own count, training.token_lengths)."""
    rows = plan.train_rows
    if variant == "group_by_length" and plan.cfg.method.name != "sft":
        prompts, answers = training.token_lengths(rows, plan.tokenizer)
        rows = rows.add_column("length", [p + a for p, a in zip(prompts, answers)])
    return rows


def project_config(plan: Plan, variant: str, out: Path, **changes: Any):
    """The plan's TRL config (what `prepare` built from the composed config) with the variant's arguments."""
    return dataclasses.replace(plan.adapt_config, output_dir=str(out), disable_tqdm=True,
                               **variant_args(plan.cfg.method.name, variant), **changes)


def project(plan: Plan, model, variant: str, config):
    """The adaptation phase's trainer (phases/adapt.py): start adapter, configured TRL trainer, the recipe's callbacks."""
    peft_model, _ = adapt.start_adapter(plan, model, None)
    callbacks = training.callbacks("adapt", None, plan.cfg.train, key="bench")
    return plan.method.build_trainer(peft_model, plan.tokenizer, variant_rows(plan, variant), config, plan.cfg.method,
                                     callbacks)


# --- training throughput --------------------------------------------------------------------------------------------


def run_one(impl: str, plan: Plan, arch: str, steps: int, warmup: int, out: Path) -> dict[str, Any]:
    plain = impl.startswith("plain_trl")
    variant = impl.split("+", 1)[1] if "+" in impl and not plain else "default"
    config = project_config(plan, variant, out, max_steps=steps + warmup)
    model = make_model(plan, arch)
    counter = meters.ForwardCounter(model)
    cuda = torch.cuda.is_available() and plan.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = (plain_trl(plan, model, config, out, False if impl == "plain_trl+no_checkpointing" else None) if plain
               else project(plan, model, variant, config))
    built = counter.snapshot()
    for quiet in (PrinterCallback, ProgressCallback):  # the same on both sides: no per-step printing
        trainer.remove_callback(quiet)
    meter = meters.StepMeter(counter)
    meter.attach(trainer)
    if plain:
        trainer.train()
    else:
        training.train(trainer, "adapt", None)
    result = {"impl": impl, **{k: round(v, 4) for k, v in meter.measured(warmup).items()},
              "build_stack_forwards": built["stack_calls"], "lora_targets": meters.lora_targets(trainer.model),
              "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
              "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}
    counter.remove()
    del trainer, model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def mfu(tokens_per_s: float, n_params: int, device: str) -> tuple[float | None, str]:
    if device != "cuda":
        return None, "n/a on CPU: no meaningful peak FLOP/s to divide by (shared cores)"
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    if peak is None:
        return None, f"n/a: no bf16 peak known for {name} (PEAK_TFLOPS)"
    return round(tokens_per_s * 4 * n_params / (peak * 1e12), 4), f"4N FLOPs/token, {peak:.0f} TFLOP/s peak"


def bench_train(work: Workload, method: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Plain TRL, the project and its variants, in alternating order (forward, then reversed, ...), so a machine
    that gets busier during the run weighs on every side; ratios are paired within each pass."""
    rows_needed = args.batch * args.accum * (args.steps + args.warmup_steps)
    train = {"per_device_train_batch_size": args.batch, "gradient_accumulation_steps": args.accum}
    impls = ["plain_trl", *(["plain_trl+no_checkpointing"] if "no_checkpointing" in args.variants else []),
             "d2lora_exp", *(f"d2lora_exp+{v}" for v in VARIANTS[method] if v in args.variants)]
    base = make_plan(work, method, rows_needed, args, work.root / "train" / method, train)
    runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
    for p in range(args.rounds):
        for impl in impls if p % 2 == 0 else impls[::-1]:
            out = work.root / "train" / method / impl / f"pass{p}"
            runs[impl].append(run_one(impl, base, work.arch, args.steps, args.warmup_steps, out))
    n_params = non_embedding_params(base)
    epochs = float(base.cfg.method.num_train_epochs)
    results = []
    for impl in impls:
        first = runs[impl][0]
        tokens = statistics.median(r["tokens_per_s"] for r in runs[impl])
        paired = [r["tokens_per_s"] / b["tokens_per_s"] for r, b in zip(runs[impl], runs["plain_trl"])]
        unckpt = [r["tokens_per_s"] / b["tokens_per_s"] for r, b in zip(runs[impl], runs.get("plain_trl+no_checkpointing", []))]
        value, how = mfu(tokens, n_params, args.device)
        micro_per_epoch = math.ceil(rows_needed / args.batch)
        result = {"arch": work.arch, "method": method, "impl": impl, "batch": args.batch, "accum": args.accum,
                  "passes": args.rounds, "tokens_per_s": round(tokens, 1),
                  "tokens_per_s_runs": [r["tokens_per_s"] for r in runs[impl]],
                  "step_s": round(statistics.median(r["step_s"] for r in runs[impl]), 4),
                  "ratio_vs_plain_trl": round(statistics.median(paired), 3),
                  "ratio_range": [round(min(paired), 3), round(max(paired), 3)],
                  "ratio_vs_plain_trl_no_checkpointing": round(statistics.median(unckpt), 3) if unckpt else None,
                  "padding_share": round(1 - first["tokens_per_s"] / first["positions_per_s"], 4),
                  "stack_forwards_per_micro_batch": first["stack_forwards_per_micro_batch"],
                  "layer0_forwards_per_micro_batch": first["layer0_forwards_per_micro_batch"],
                  "rows_per_stack_forward": first["rows_per_stack_forward"],
                  "precompute_stack_forwards": first["build_stack_forwards"],
                  # One epoch of the timed rows, `epochs` times (the configured run): the precompute pass is paid once.
                  "stack_forwards_per_micro_batch_amortised": round(first["stack_forwards_per_micro_batch"]
                                                                    + first["build_stack_forwards"] / (epochs * micro_per_epoch), 3),
                  "gradient_checkpointing": first["gradient_checkpointing"], "lora_targets": first["lora_targets"],
                  "peak_mem_gib": max((r["peak_mem_gib"] for r in runs[impl] if r["peak_mem_gib"] is not None), default=None),
                  "mfu": value, "mfu_basis": how, "n_params": n_params, "epochs_configured": epochs}
        results.append(result)
    return results


# --- padding ----------------------------------------------------------------------------------------------------------


def bench_padding(work: Workload, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One epoch of each trainer's batches (its sampler and collator; nothing runs through the model): plain TRL's
    padded batches and the project's, length-grouped and padding-free, at batch 4 and 16, on GSM8K-like rows."""
    out = []
    for method in args.methods:
        plan = make_plan(work, method, args.padding_rows, args, work.root / "padding" / method)
        out += padding_table(plan, "gsm8k-like", work.arch,
                             ("plain_trl", "d2lora_exp", "d2lora_exp+group_by_length", "d2lora_exp+padding_free"))
    for method in ("sft", "dpo"):  # the miniature world's own rows (its model and byte-level tokenizer)
        cfg = compose_cfg(["experiment=miniature_v3", f"method={method}", f"data_size={args.padding_rows}", "device=cpu",
                           "wandb.mode=disabled"])
        where = work.root / "padding" / f"miniature-{method}"
        with open_dict(cfg):
            cfg.paths.output_dir = str(where)
        out += padding_table(prepare(cfg, where), "miniature", None, ("d2lora_exp", "d2lora_exp+group_by_length"))
    return out


def padding_table(plan: Plan, data: str, arch: str | None, impls: tuple[str, ...]) -> list[dict[str, Any]]:
    """The sides' padding at batch 4 and 16 on the plan's rows; `arch` None loads the plan's own model."""
    out = []
    method = plan.cfg.method.name
    for batch in (4, 16):
        for impl in impls:
            variant = impl.split("+", 1)[1] if "+" in impl else "default"
            base = {"data": data, "method": method, "batch": batch, "impl": impl}
            if (method, variant) in NOT_AVAILABLE:
                out.append({**base, "share": None, "reason": NOT_AVAILABLE[(method, variant)]})
                continue
            config = project_config(plan, variant, plan.out_dir / f"{batch}-{impl}", per_device_train_batch_size=batch,
                                    gradient_accumulation_steps=1)
            model = (make_model(plan, arch) if arch else
                     modeling.load_model(plan.model_source, plan.cfg.model, plan.device, plan.dtype))
            trainer = plain_trl(plan, model, config, plan.out_dir) if impl == "plain_trl" else project(plan, model, variant, config)
            out.append({**base, **meters.padding(trainer)})
            del trainer, model
    return out


# --- evaluation -------------------------------------------------------------------------------------------------------


def bench_eval(work: Workload, args: argparse.Namespace) -> dict[str, Any]:
    """The project's evaluation phase (phases/evaluate.run) on the model with a LoRA adapter attached, at the
    configured eval batch, one evaluator at a time (each timed): GSM8K generation with replies as long as the
    reference solutions (workload.ReplyLengths), ARC-Easy log-likelihood scoring."""
    plan = make_plan(work, "sft", 0, args, work.root / "eval")
    model = adapters.fresh(make_model(plan, work.arch), plan.cfg.lora, seed=0)
    result: dict[str, Any] = {"arch": work.arch, "batch": int(plan.cfg.eval.batch_size),
                              "max_new_tokens": int(plan.cfg.eval.max_new_tokens), "engine": str(plan.cfg.eval.engine),
                              "adapter": meters.lora_targets(model)}
    for evaluator in plan.evaluators:
        replies = workload.ReplyLengths(plan.tokenizer, work.replies)
        counter = meters.ForwardCounter(model)
        handle = replies.attach(model)
        start = time.perf_counter()
        metrics, record = evaluate.run(dataclasses.replace(plan, evaluators=[evaluator]), model)
        seconds = time.perf_counter() - start
        handle.remove()
        counter.remove()
        if record is None or record["reused"]:
            raise RuntimeError(f"evaluation of {evaluator.name} was not computed: {record}")
        rows = len(evaluator.rows)
        entry = {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 2),
                 "engine": record["engines"][evaluator.name]}
        if evaluator.name == "gsm8k":
            entry.update(replies.summary())
        else:
            # The harness's hf engine scores right-padded batches without an attention mask: no padding to count.
            entry["scoring_padding_share"] = (round(1 - counter.scored_real / counter.scored_positions, 4)
                                              if counter.scored_positions else None)
        result[evaluator.name] = entry
    return result


# --- main -------------------------------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, a few steps and rows")
    parser.add_argument("--archs", default=None, help=f"comma-separated, of {sorted(ARCHS)} (CUDA: llama3-8b,llama3-1b; CPU: tiny)")
    parser.add_argument("--methods", default="sft,dpo,orpo")
    parser.add_argument("--variants", default="no_checkpointing,group_by_length,padding_free,every_step_ref",
                        help="variants timed beside plain TRL and the project: no_checkpointing (of plain TRL), "
                             "the others of the project (each where its method has it)")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per run")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=2, help="passes over all sides, alternating order")
    parser.add_argument("--batch", type=int, default=None, help="micro-batch (default: the paper preset's, 4)")
    parser.add_argument("--accum", type=int, default=None, help="gradient accumulation (default: the paper preset's, 4)")
    parser.add_argument("--pool-rows", type=int, default=2000, help="rows of the GSM8K-like training pool")
    parser.add_argument("--padding-rows", type=int, default=2000, help="rows per padding measurement (one epoch)")
    parser.add_argument("--eval-limit", type=int, default=None, help="GSM8K / ARC-Easy rows (default: all)")
    parser.add_argument("--attn", default="sdpa", help="attention implementation of the model (both sides)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: train,padding,eval")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("override", nargs="*", help="config overrides for the project's run, e.g. eval.engine=hf")
    args = parser.parse_args(argv)
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = compose_cfg(["experiment=paper"])
    args.batch = args.batch or int(cfg.train.per_device_train_batch_size)
    args.accum = args.accum or int(cfg.train.gradient_accumulation_steps)
    if args.smoke:
        args.archs, args.steps, args.warmup_steps, args.rounds, args.batch, args.accum = "tiny", 2, 1, 1, 2, 2
        args.pool_rows, args.padding_rows, args.eval_limit = 64, 48, 8
        args.override = ["eval.batch_size=4", "eval.max_new_tokens=256", *args.override]
    args.archs = (args.archs or ("llama3-8b,llama3-1b" if args.device == "cuda" else "tiny")).split(",")
    args.methods = args.methods.split(",")
    args.variants = [v for v in args.variants.split(",") if v]
    args.skip = {s for s in args.skip.split(",") if s}
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    env = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "torch": torch.__version__,
           "threads": torch.get_num_threads(), "python": sys.version.split()[0], "load_start": os.getloadavg()[0]}
    for lib in ("transformers", "peft", "trl"):
        env[lib] = __import__(lib).__version__
    print(json.dumps(env))
    results: dict[str, Any] = {"env": env, "args": {k: v if not isinstance(v, (Path, set)) else str(v)
                                                    for k, v in vars(args).items()},
                               "train": [], "padding": [], "eval": []}
    with tempfile.TemporaryDirectory(prefix="d2lora_bench_") as tmp:
        for arch in args.archs:
            work = build_workload(Path(tmp) / arch, arch, args.pool_rows, args.eval_limit)
            if "train" not in args.skip:
                for method in args.methods:
                    for r in bench_train(work, method, args):
                        results["train"].append(r)
                        print_train(r)
                print(f"MFU: {results['train'][-1]['mfu_basis']}; tok/s counts real (non-padding) tokens; "
                      "fwd = decoder passes, layer0 = first layer's attention passes (checkpointing recomputes)")
            if "eval" not in args.skip:
                ev = bench_eval(work, args)
                results["eval"].append(ev)
                print_eval(ev)
        if "padding" not in args.skip:
            work = build_workload(Path(tmp) / "padding", "tiny", args.pool_rows, args.eval_limit)
            results["padding"] = bench_padding(work, args)
            print_padding(results["padding"])
    env["load_end"] = os.getloadavg()[0]
    print(f"load average (1 min): {env['load_start']:.2f} at start, {env['load_end']:.2f} at end")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return results


def print_train(r: dict[str, Any]) -> None:
    mem = f"{r['peak_mem_gib']} GiB" if r["peak_mem_gib"] is not None else "n/a (CPU)"
    no_ckpt = r["ratio_vs_plain_trl_no_checkpointing"]
    print(f"{r['arch']:9s} {r['method']:4s} {r['impl']:29s} {r['tokens_per_s']:>11,.0f} tok/s  "
          f"x{r['ratio_vs_plain_trl']:.2f} vs plain TRL [{r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f}]"
          + (f" x{no_ckpt:.2f} vs no-ckpt" if no_ckpt else "")
          + f"  pad {100 * r['padding_share']:4.1f}%  fwd/micro-batch {r['stack_forwards_per_micro_batch']:.2f} "
          f"(amortised {r['stack_forwards_per_micro_batch_amortised']:.2f}, layer0 {r['layer0_forwards_per_micro_batch']:.2f})  "
          f"GC {'on' if r['gradient_checkpointing'] else 'off'}  mem {mem}  MFU {r['mfu'] if r['mfu'] is not None else 'n/a'}")


def print_padding(rows: list[dict[str, Any]]) -> None:
    print("padding share of computed training positions (goal <= 5%):")
    for r in rows:
        share = f"{100 * r['share']:5.1f}%" if r.get("share") is not None else f"  n/a ({r['reason']})"
        print(f"  {r['data']:10s} {r['method']:4s} batch {r['batch']:2d} {r['impl']:27s} {share}")


def print_eval(ev: dict[str, Any]) -> None:
    g = ev.get("gsm8k", {})
    print(f"{ev['arch']:9s} eval (adapter {len(ev['adapter'])} targets, batch {ev['batch']}, max_new_tokens "
          f"{ev['max_new_tokens']}, engine {g.get('engine')}): GSM8K {g.get('rows')} rows in {g.get('seconds')} s, "
          f"{g.get('slots_per_reply_token')} decode slots per reply token, prompt padding "
          f"{g.get('prompt_padding_share')}")
    if "arc_easy" in ev:
        a = ev["arc_easy"]
        print(f"{ev['arch']:9s} eval: ARC-Easy {a['rows']} rows in {a['seconds']} s, scoring padding {a['scoring_padding_share']}")


if __name__ == "__main__":
    main()
