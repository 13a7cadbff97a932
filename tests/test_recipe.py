"""The real chain (warm-up -> adaptation -> evaluation) on the tiny model, for every init x method."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from d2lora_exp import adapters, recipe

pytestmark = pytest.mark.e2e


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def wandb_runs(out: Path) -> dict[str, dict]:
    """What the offline W&B runs in a run dir logged, read back with W&B's own reader, by run name."""
    cli = Path(sys.executable).with_name("wandb")
    runs = {}
    for run_dir in (out / "wandb").glob("offline-run-*"):
        proc = subprocess.run([str(cli), "leet", "inspect", "--summary", "--json", str(run_dir)],
                              capture_output=True, text=True, check=True)
        data = json.loads(proc.stdout)
        runs[data["name"]] = data
    return runs


@pytest.mark.parametrize("method", ["sft", "dpo", "orpo"])
@pytest.mark.parametrize("init", ["lora", "d2lora"])
def test_chain_trains_saves_evaluates_and_logs(make_cfg, init, method):
    cfg = make_cfg(f"init={init}", f"method={method}")
    result = recipe.run(cfg)
    out = Path(cfg.paths.output_dir)
    saved = _metrics(out)
    assert saved["status"] == "complete" and saved == json.loads(json.dumps(result, default=str))
    assert (saved["init"], saved["method"], saved["data_size"]) == (init, method, 8)

    # The adapter was trained: saved as safetensors, and different from where adaptation started.
    adapter_dir = out / "adapter"
    assert (adapter_dir / "adapter_model.safetensors").is_file()
    assert not (adapter_dir / "adapter_model.bin").exists()
    assert adapters.file_digest(adapter_dir) != saved["adapt"]["start"]["digest"]
    assert saved["adapt"]["lora_b_norm"] > 0
    assert math.isfinite(saved["adapt"]["train_loss"]) and saved["adapt"]["steps"] == 2

    if init == "d2lora":
        # Adaptation starts from the warm-up adapter's weights, not from a fresh init.
        assert saved["adapt"]["start"]["digest"] == adapters.file_digest(saved["warmup"]["adapter"])
        assert saved["adapt"]["start"]["lora_b_norm"] > 0
    else:
        assert "warmup" not in saved
        assert saved["adapt"]["start"]["lora_b_norm"] == 0.0

    # Evaluation: metric, per-example predictions, and the same numbers in the W&B run.
    assert 0.0 <= saved["metrics"]["accuracy"] <= 100.0 and saved["metrics"]["eval_n"] == 4
    predictions = [json.loads(line) for line in (out / "predictions_gsm8k.jsonl").read_text().splitlines()]
    assert len(predictions) == 4 and {"question", "output", "extracted", "correct"} <= set(predictions[0])
    logged = wandb_runs(out)[f"{init}-{method}-math-n8-s0"]
    summary = logged["summary"]
    assert logged["config"]["init.name"] == init and logged["config"]["data_size"] == 8
    assert logged["exit_code"] == 0
    if init == "d2lora":  # the run names the warm-up it started from
        assert logged["config"]["warmup_used.key"] == saved["warmup"]["key"]
    # Every TRL argument each phase trained with, defaults included (the optimizer is in no config of ours).
    trl_args = saved["trl_args"]
    assert trl_args["adapt"]["learning_rate"] == cfg.method.learning_rate and trl_args["adapt"]["optim"]
    assert ("warmup" in trl_args) == (init == "d2lora") and "hub_token" not in trl_args["adapt"]
    assert logged["config"]["trl_args.max_grad_norm"] == trl_args["adapt"]["max_grad_norm"]
    assert summary["eval/accuracy"] == saved["metrics"]["accuracy"]
    assert (summary["data_size"], summary["init"], summary["method"]) == (8, init, method)
    assert "adapt/loss" in summary
    # The per-example predictions, as a W&B table beside the score.
    assert summary["predictions/gsm8k"]["_type"] == "table-file" and summary["predictions/gsm8k"]["nrows"] == 4


@pytest.mark.parametrize("init", ["lora", "d2lora"])
def test_data_size_zero_evaluates_the_initialisation_once_for_every_method(make_cfg, init):
    """n=0 is a run like any other, one per method curve; its evaluation (of the initialisation) is content-
    addressed, so the first method computes it and the others reuse it, with the same numbers."""
    results = []
    for method in ("sft", "dpo", "orpo"):
        cfg = make_cfg(f"init={init}", f"method={method}", "data_size=0", "eval.limit=5", out=f"n0-{method}")
        results.append(recipe.run(cfg))
        out = Path(cfg.paths.output_dir)
        assert results[-1]["status"] == "complete" and "adapt" not in results[-1] and results[-1]["method"] == method
        assert not (out / "adapter").exists()
        assert len((out / "predictions_gsm8k.jsonl").read_text().splitlines()) == 5
    assert [r["evaluation"]["reused"] for r in results] == [False, True, True]
    assert len({r["evaluation"]["key"] for r in results}) == 1
    assert all(r["metrics"] == results[0]["metrics"] for r in results)
    assert ("warmup" in results[0]) == (init == "d2lora")
    if init == "d2lora":
        assert (Path(results[0]["warmup"]["adapter"]) / "adapter_model.safetensors").is_file()
    # Another seed is another warm-up, so another evaluation; without a warm-up nothing is created at n=0 and
    # every init and seed evaluates the same base model (a fresh adapter reproduces it exactly).
    other = recipe.run(make_cfg(f"init={init}", "data_size=0", "eval.limit=5", "seed=1", out="n0-seed1"))
    assert (other["evaluation"]["key"] == results[0]["evaluation"]["key"]) == (init == "lora")
    if init == "lora":
        pissa = recipe.run(make_cfg("init=pissa", "data_size=0", "eval.limit=5", out="n0-pissa"))
        assert pissa["evaluation"]["key"] == results[0]["evaluation"]["key"] and pissa["evaluation"]["reused"]


def test_an_evaluation_without_math_verify_is_not_reused_for_a_run_that_asks_for_it(make_cfg):
    """Same weights, same rows: the checkers are part of the evaluation's key, their order is not."""
    common = ("data_size=0", "eval.limit=3")
    ours = recipe.run(make_cfg(*common, out="ours"))
    both = recipe.run(make_cfg(*common, "task.eval.checker=[ours,math_verify]", out="both"))
    swapped = recipe.run(make_cfg(*common, "task.eval.checker=[math_verify,ours]", out="swapped"))
    assert "accuracy_math_verify" not in ours["metrics"] and not both["evaluation"]["reused"]
    assert both["evaluation"]["key"] != ours["evaluation"]["key"]
    assert swapped["evaluation"] | {"reused": False} == both["evaluation"] and swapped["evaluation"]["reused"]
    assert {k: both["metrics"][k] for k in ours["metrics"]} == ours["metrics"]  # ours unchanged beside it
    rows = [json.loads(line) for line in (Path(both["evaluation"]["dir"]) / "predictions_gsm8k.jsonl").read_text().splitlines()]
    assert both["metrics"]["accuracy_math_verify"] == pytest.approx(100 * sum(r["correct_math_verify"] for r in rows) / 3)


def test_titles_task_reports_rouge(make_cfg):
    result = recipe.run(make_cfg("task=titles"))
    assert set(result["metrics"]) >= {"rouge1", "rouge2", "rougeL"}
    assert result["metric"] == "rougeL" and result["score"] == result["metrics"]["rougeL"]
    m = result["metrics"]
    assert m["rougeL_ci95_low"] <= m["rougeL"] <= m["rougeL_ci95_high"]  # bootstrap over the held-out pairs


def test_data_size_all_trains_on_the_whole_pool_and_records_its_size(make_cfg):
    """`all` (the paper's last titles point) is the pool's size in metrics.json, asked-for value beside it; the
    run's name, and so its sweep directory, says `nall` whatever the data holds."""
    cfg = make_cfg("task=titles", "data_size=all", "eval.limit=2")
    assert cfg.run_name == "lora-sft-titles-nall-s0"
    result = recipe.run(cfg)
    saved = _metrics(Path(cfg.paths.output_dir))
    assert saved == json.loads(json.dumps(result, default=str)) and saved["status"] == "complete"
    assert (saved["data_size"], saved["data_size_requested"], saved["pool_size"]) == (300, "all", 300)
    assert saved["train_rows"] + (saved["overlong"]["adapt"] if saved["overlong"]["policy"] == "drop" else 0) == 300
    assert saved["adapt"]["steps"] == 300 // 4  # one epoch over every row, 4 a batch
    assert recipe.run(make_cfg("task=titles", "data_size=8", "eval.limit=2", out="n8"))["data_size_requested"] == 8


def test_results_survive_a_crash_after_training(make_cfg, monkeypatch):
    """A failure in evaluation keeps the warm-up, the trained adapter and the training stats."""
    cfg = make_cfg("init=d2lora", "eval.limit=3")  # an evaluation no other test has cached
    from d2lora_exp.evaluation.gsm8k import GSM8K

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash in evaluation")

    monkeypatch.setattr(GSM8K, "evaluate_with", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        recipe.run(cfg)
    out = Path(cfg.paths.output_dir)
    saved = _metrics(out)
    assert saved["status"] == "failed" and "simulated crash" in saved["error"]
    assert (Path(saved["warmup"]["adapter"]) / "adapter_model.safetensors").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert saved["adapt"]["steps"] == 2


def test_secrets_never_reach_outputs(make_cfg, monkeypatch):
    secret_hf, secret_wandb = "hf_SECRETsecret123456", "wandbSECRETkey0987654321"
    monkeypatch.setenv("HF_TOKEN", secret_hf)
    monkeypatch.setenv("WANDB_API_KEY", secret_wandb)
    cfg = make_cfg("init=d2lora", "wandb.mode=offline")
    recipe.run(cfg)
    for path in Path(cfg.paths.output_dir).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret_hf.encode() not in data and secret_wandb.encode() not in data, path
