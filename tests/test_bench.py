"""The benchmark keeps working on CPU (the tiny model) and its counts mean what they say; the speed figures come from
its full runs (benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from d2lora_exp import chat, tiny_model
from d2lora_exp.evaluation import generation

REPO = Path(__file__).resolve().parents[1]
LLAMA_LINEAR = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, real_data):
    real_data("gsm8k/train.jsonl"), real_data("gsm8k/test.jsonl"), real_data("arc_easy/test.jsonl")
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench.py"), "--smoke", "--threads", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.e2e
def test_training_is_compared_like_for_like(smoke):
    results, stdout = smoke
    rows = {(r["method"], r["impl"]): r for r in results["train"]}
    assert set(rows) == {*((m, "plain_trl+no_checkpointing") for m in ("sft", "dpo", "orpo")),
                         ("sft", "plain_trl"), ("sft", "d2lora_exp"), ("sft", "d2lora_exp+group_by_length"),
                         ("sft", "d2lora_exp+padding_free"), ("dpo", "plain_trl"), ("dpo", "d2lora_exp"),
                         ("dpo", "d2lora_exp+group_by_length"), ("dpo", "d2lora_exp+every_step_ref"),
                         ("orpo", "plain_trl"), ("orpo", "d2lora_exp"), ("orpo", "d2lora_exp+group_by_length")}
    for r in rows.values():
        # The baseline's LoraConfig is the project's: every linear layer, not PEFT's q_proj/v_proj default.
        assert r["lora_targets"] == LLAMA_LINEAR
        assert r["tokens_per_s"] > 0 and r["ratio_vs_plain_trl"] > 0 and 0 <= r["padding_share"] < 1
        assert r["mfu"] is None and "n/a on CPU" in r["mfu_basis"]
    for method in ("sft", "dpo", "orpo"):
        assert rows[(method, "plain_trl")]["ratio_vs_plain_trl"] == 1.0
        # Same rows, batch and collator: the same padding on both sides.
        assert rows[(method, "d2lora_exp")]["padding_share"] == rows[(method, "plain_trl")]["padding_share"]
        assert f"{method:4s} d2lora_exp " in stdout
    assert rows[("sft", "d2lora_exp+padding_free")]["padding_share"] == 0
    # TRL's default checkpoints activations and the project's does not: the first layer runs again in the backward.
    assert rows[("sft", "plain_trl")]["layer0_forwards_per_micro_batch"] == 2
    assert rows[("sft", "plain_trl+no_checkpointing")]["layer0_forwards_per_micro_batch"] == 1
    assert rows[("sft", "d2lora_exp")]["layer0_forwards_per_micro_batch"] == 1
    assert rows[("sft", "d2lora_exp")]["ratio_vs_plain_trl_no_checkpointing"] > 0


@pytest.mark.e2e
def test_dpo_forward_passes_per_step(smoke):
    rows = {r["impl"]: r for r in smoke[0]["train"] if r["method"] == "dpo"}
    # The project precomputes the reference log-probs (method.precompute_ref=auto): only the policy each step, the
    # reference paid once before training; a reference pass at every step (the former default) is two passes.
    assert rows["d2lora_exp+every_step_ref"]["stack_forwards_per_micro_batch"] == 2
    precomputed = rows["d2lora_exp"]
    assert precomputed["stack_forwards_per_micro_batch"] == 1 and precomputed["precompute_stack_forwards"] > 0
    assert 1 < precomputed["stack_forwards_per_micro_batch_amortised"] < 2
    assert rows["d2lora_exp"]["rows_per_stack_forward"] == 2 * rows["d2lora_exp"]["batch"]  # chosen + rejected


@pytest.mark.e2e
def test_padding_shares(smoke):
    table = smoke[0]["padding"]
    measured = [r for r in table if r["share"] is not None]
    assert {(r["data"], r["method"], r["batch"]) for r in measured} >= {
        (d, m, b) for d, m in (("gsm8k-like", "sft"), ("gsm8k-like", "dpo"), ("gsm8k-like", "orpo"), ("miniature", "sft"))
        for b in (4, 16)}
    for r in measured:
        assert 0 <= r["share"] < 1 and r["positions"] >= r["real"] > 0
    by = {(r["data"], r["method"], r["batch"], r["impl"]): r for r in table}
    for batch in (4, 16):
        plain, ours = by[("gsm8k-like", "sft", batch, "plain_trl")], by[("gsm8k-like", "sft", batch, "d2lora_exp")]
        assert plain["share"] == ours["share"] > 0
        assert by[("gsm8k-like", "sft", batch, "d2lora_exp+padding_free")]["share"] == 0
        # Each real token is computed once whatever the layout.
        assert by[("gsm8k-like", "sft", batch, "d2lora_exp+padding_free")]["real"] == ours["real"]
        assert by[("gsm8k-like", "dpo", batch, "d2lora_exp+padding_free")]["reason"]
    # A wider batch pads more (its longest row is longer).
    assert by[("gsm8k-like", "sft", 16, "d2lora_exp")]["share"] > by[("gsm8k-like", "sft", 4, "d2lora_exp")]["share"]


@pytest.mark.e2e
def test_evaluation_runs_the_project_path_with_an_adapter(smoke):
    (ev,) = smoke[0]["eval"]
    assert ev["adapter"] == LLAMA_LINEAR and ev["batch"] == 4
    gsm8k, arc = ev["gsm8k"], ev["arc_easy"]
    assert gsm8k["rows"] == 8 and gsm8k["batches"] == 2 and gsm8k["rows_per_s"] > 0
    assert gsm8k["slots_per_reply_token"] >= 1 and gsm8k["decode_slots"] >= gsm8k["reply_tokens"] > 0
    assert 0 <= gsm8k["prompt_padding_share"] < 1
    # None under the harness engine, which scores without an attention mask (benchmarks/RESULTS.md).
    assert arc["rows"] == 8 and arc["engine"] == "hf" and arc["scoring_padding_share"] is None


def test_reply_lengths_counts_what_batched_decoding_computes():
    """The stand-in replies as long as asked (EOS at that length), and the counts are those of batched decoding: a
    batch computes one slot per row per step until its longest reply (or max_new_tokens) ends."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import workload

    tokenizer = workload.bench_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_model.config(tokenizer, "tiny"))
    targets, batch, max_new = [3, 10, 5, 20, 7, 1], 3, 12
    questions = [f"question {i:02d} " + "x" * 10 for i in range(len(targets))]  # one length: batches in input order
    replies = workload.ReplyLengths(tokenizer, dict(zip(questions, targets)))
    handle = replies.attach(model)
    stopped: list[bool] = []
    generation.generate(model, tokenizer, [chat.user_prompt(tokenizer, q) for q in questions], batch, max_new,
                        stopped=stopped)
    handle.remove()
    capped = [min(t, max_new) for t in targets]
    assert stopped == [t <= max_new for t in targets]
    summary = replies.summary()
    assert summary["batches"] == 2 and summary["reply_tokens"] == sum(capped)
    assert summary["decode_slots"] == sum(batch * max(capped[i:i + batch]) for i in range(0, len(targets), batch))
    assert summary["prompt_padding_share"] == 0
