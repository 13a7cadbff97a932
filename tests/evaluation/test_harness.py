"""lm-evaluation-harness as the engine: the shipped tasks compute what a direct computation does, the harness's own
tasks run on local data, and the vLLM engine is configured from the saved adapter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from d2lora_exp import adapters, chat, modeling, recipe, report
from d2lora_exp.evaluation import arc, generation, gsm8k, harness
from d2lora_exp.phases.prepare import prepare


def _rows(run_dir: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / f"predictions_{name}.jsonl").read_text().splitlines()]


def _direct_logprob(model, tok, prompt: str, choice: str) -> float:
    """Sum of log p(choice tokens | prompt), by hand: one unpadded forward pass of prompt + choice."""
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    full = tok(prompt + choice, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), -1)
    return sum(logp[t - 1, full[t]].item() for t in range(len(p_ids), len(full)))


@pytest.mark.e2e
def test_hf_engine_equals_a_direct_computation_on_real_gsm8k_and_arc(make_cfg, real_data):
    """World v3's model after a few SFT steps (a PeftModel in memory), scored through the harness on real
    GSM8K and ARC-Easy rows: its batched replies equal greedy generation one question at a time, its log-likelihoods
    a forward pass by hand, and its metrics our scoring of those replies. World v3's, whose byte-level tokenizer makes
    it write replies to real GSM8K text: world v5's word-level model mostly ends its turn at once on words it never
    saw, and empty replies would compare nothing (measured: 1 of 12 non-empty)."""
    cfg = make_cfg("experiment=miniature_v3", "wandb.mode=disabled", "data_size=32", "method.num_train_epochs=1",
                   "eval.limit=12", "eval.max_new_tokens=40", "eval.batch_size=5", "task.eval.checker=[ours,math_verify]",
                   "eval.evaluators=[task,arc_easy]", f"task.eval.data={{path: {real_data('gsm8k/test.jsonl')}}}",
                   f"eval.arc_easy_data={{path: {real_data('arc_easy/test.jsonl')}}}", fast=False)
    result = recipe.run(cfg)
    assert result["evaluation"]["engines"] == {"gsm8k": "hf", "arc_easy": "hf"}
    out = Path(cfg.paths.output_dir)
    plan = prepare(cfg, out)
    model = adapters.load_frozen(modeling.load_model(plan.model_source, cfg.model, "cpu", torch.float32), out / "adapter")
    model.eval()
    tok = plan.tokenizer

    rows = _rows(out, "gsm8k")
    one_by_one = [generation.generate(model, tok, [chat.user_prompt(tok, r["question"])], 1, 40)[0] for r in rows]
    assert [r["output"] for r in rows] == one_by_one and len(rows) == 12 and sum(map(bool, one_by_one)) >= 6
    answers = [r["answer"] for r in rows]
    assert result["metrics"]["accuracy"] == pytest.approx(gsm8k.score(one_by_one, answers)["accuracy"])
    verdicts = gsm8k.math_verify_verdicts(one_by_one, answers)
    assert result["metrics"]["accuracy_math_verify"] == pytest.approx(100 * sum(c for c, _ in verdicts) / 12)

    arc_rows = _rows(out, "arc_easy")
    assert len(arc_rows) == 12
    for row in arc_rows[:4]:
        prompt = chat.user_prompt(tok, f"{row['question']}\nAnswer:")
        direct = [_direct_logprob(model, tok, prompt, c) for c in row["choices"]["text"]]
        assert row["logprobs"] == pytest.approx(direct, abs=1e-4)
    correct = [float(max(range(len(r["logprobs"])), key=r["logprobs"].__getitem__) == arc.gold_index(r)) for r in arc_rows]
    assert [r["acc"] for r in arc_rows] == correct
    assert result["metrics"]["arc_acc"] == pytest.approx(100 * sum(correct) / 12)


@pytest.mark.e2e
def test_harness_tasks_run_after_a_run_on_local_copies_of_their_data(make_cfg, real_data):
    """`eval.harness.tasks=[gsm8k, arc_easy]` with the real files: the harness's own prompts and few-shot examples
    (from the local train split), metrics named harness/<task>/<metric>, one predictions row per example."""
    files = (f"eval.harness.data_files={{gsm8k: {{train: {real_data('gsm8k/train.jsonl')}, test: "
             f"{real_data('gsm8k/test.jsonl')}}}, arc_easy: {{test: {real_data('arc_easy/test.jsonl')}}}}}")
    cfg = make_cfg("eval.harness.tasks=[gsm8k,arc_easy]", files, "eval.harness.num_fewshot=2", "eval.limit=3",
                   "eval.max_new_tokens=4", "eval.evaluators=[task]")
    result = recipe.run(cfg)
    metrics = result["metrics"]
    assert {"harness/gsm8k/exact_match,strict-match", "harness/gsm8k/exact_match,flexible-extract",
            "harness/arc_easy/acc", "harness/arc_easy/acc_norm"} <= set(metrics)
    assert metrics["harness/gsm8k/n"] == 3 * 2 and metrics["harness/arc_easy/n"] == 3  # gsm8k: two filters per row
    assert all(0.0 <= v <= 1.0 for k, v in metrics.items() if not k.endswith("/n") and k.startswith("harness/"))
    assert "accuracy" in metrics  # the run's own evaluator ran too
    assert result["evaluation"]["engines"] == {"gsm8k": "hf", "harness": "hf"}
    rows = _rows(Path(cfg.paths.output_dir), "harness")
    assert {r["task"] for r in rows} == {"gsm8k", "arc_easy"} and len(rows) == 9
    arc_rows = [r for r in rows if r["task"] == "arc_easy"]
    test_ids = [json.loads(line)["id"] for line in real_data("arc_easy/test.jsonl").read_text().splitlines()[:3]]
    assert len(arc_rows) == 3 and all(len(r["logprobs"]) >= 3 for r in arc_rows) and test_ids
    run_dir = next((Path(cfg.paths.output_dir) / "wandb").glob("offline-run-*"))
    inspected = subprocess.run([str(Path(sys.executable).with_name("wandb")), "leet", "inspect", "--summary", "--json",
                                str(run_dir)], capture_output=True, text=True, check=True).stdout
    summary = json.loads(inspected)["summary"]
    assert summary["eval/harness/arc_easy/acc"] == pytest.approx(metrics["harness/arc_easy/acc"])  # W&B has them too
    written = report.write(Path(cfg.paths.output_dir).parent)
    text = (Path(cfg.paths.output_dir).parent / "report.md").read_text()
    assert "## math: harness/arc_easy/acc" in text and "## math: harness/gsm8k/exact_match,strict-match" in text
    assert written  # and the curves were drawn under file names without the slashes
    assert (Path(cfg.paths.output_dir).parent / "curve_math_harness_arc_easy_acc.png").is_file()


def test_vllm_engine_takes_the_adapter_and_its_own_rank(tmp_path):
    """Converted pissa/olora/corda adapters have rank 2r: vLLM must be told the adapter's rank, not lora.r."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 32, "rank_pattern": {"q_proj": 48}}))
    args = harness.vllm_args("meta-llama/Llama-3.1-8B-Instruct", "bfloat16", adapter, 512, {"gpu_memory_utilization": 0.5})
    assert args["lora_local_path"] == str(adapter) and args["max_lora_rank"] == 48
    assert args["add_bos_token"] is False and args["gpu_memory_utilization"] == 0.5 and args["max_gen_toks"] == 512
    base_only = harness.vllm_args("m", "bfloat16", None, 8, {})
    assert "lora_local_path" not in base_only and "max_lora_rank" not in base_only


def test_metric_names_follow_the_harness():
    result = {"alias": "gsm8k", "exact_match,strict-match": 0.25, "exact_match_stderr,strict-match": "N/A",
              "acc,none": 0.5, "acc_stderr,none": 0.1}
    assert harness.metric_values(result) == {"exact_match,strict-match": 0.25, "acc": 0.5}


def test_every_shipped_task_loads_in_the_harness():
    """The YAMLs a user runs standalone (`lm_eval --include_path ...`) parse and name their scoring functions."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(harness.TASKS_DIR), include_defaults=False)
    shipped = sorted(p.stem for p in harness.TASKS_DIR.glob("*.yaml"))
    assert shipped == ["d2lora_arc_easy", "d2lora_gsm8k", "d2lora_titles"] and set(shipped) <= set(manager.all_tasks)
    gsm8k = harness._load_yaml(harness.TASKS_DIR / "d2lora_gsm8k.yaml")
    score = gsm8k["process_results"]({"answer": "3 + 4 = 7\n#### 7"}, ["Step 1: 3 + 4 = 7.\nThe answer is: 7"])
    assert score == {"accuracy": 1.0, "strict_accuracy": 1.0}


@pytest.mark.parametrize("listed, emitted", [(["<|eot|>", "<|system|>"], "<|system|>"), (["<|system|>"], "<|eot|>")],
                         ids=["second-listed-end-token", "tokenizer-eos-not-listed"])
def test_hf_engine_stops_at_every_end_token(second_end_token_model, listed, emitted):
    """The harness's hf engine ends each reply at any end token, as generation.generate does (test_generation.py):
    without the engine's end ids, a model whose generation config does not list the tokenizer's EOS runs on past it."""
    from lm_eval.api.instance import Instance

    model, tok = second_end_token_model(listed, emitted)
    engine = harness.Engine("hf", model, tok, 2, 8, "tiny", "float32")
    # "zzz" is no chat turn: the script never ends it, so its batch runs on after the other reply has ended (a batch
    # whose rows all end together is stopped by the harness's `until`, which would hide a row running on).
    prompts = [chat.user_prompt(tok, q) for q in ["a", "bb", "ccc"]] + ["zzz"]
    requests = [Instance("generate_until", {}, (p, {"until": [], "max_gen_toks": 8, "do_sample": False}), i)
                for i, p in enumerate(prompts)]
    expected = ["OK"] * 3 + ["X" * 8]
    assert engine.lm().generate_until(requests, disable_tqdm=True) == expected
    assert generation.generate(model, tok, prompts, 2, 8) == expected
