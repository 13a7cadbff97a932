"""Each bad input stops before any training with one message that names the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from d2lora_exp import recipe
from d2lora_exp.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _no_training(monkeypatch):
    """Make any attempt to build a model fail loudly, proving the check came first."""
    from d2lora_exp import modeling

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before the bad input was detected")

    monkeypatch.setattr(modeling, "load_model", forbidden)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data_size=-1"], r"data_size=-1 is negative; use an integer >= 0"),
        (["data_size=5000"], r"data_size=5000 exceeds the 1200 rows of the math training pool; use data_size <= 1200"),
        (["task=titles", "data_size=301"], r"exceeds the 300 rows of the titles training pool"),
        (["device=cuda"], r"device=cuda was requested but no CUDA GPU.*pass device=cpu"),
        (["task=titles", "method=dpo"], r"task 'titles' has no preference pairs.*use method=sft"),
        (["method=orpo", "train.max_length=64"], r"prompts of >= train.max_length=64 tokens.*Raise train.max_length"),
        (["init=d2lora", "warmup.size=100000"], r"exceeds the \d+ rows of the warm-up pool"),
        (["init=d2lora", "method=dpo", "method.reference=parent"], r"method.reference='parent': use init .* or base"),
        (["init=pissa", "method=dpo", "method.reference=base"], r"rewrites the base weights.*Use method.reference=init"),
        (["init.base=svd"], r"init.base='svd': choose one of"),
        (["method.learning_rate=-1"], r"method.learning_rate=-1 is not valid: use a number > 0"),
        (["method.learning_rate=abc"], r"method.learning_rate='abc' is not valid: use a number > 0"),
        (["train.per_device_train_batch_size=0"], r"train.per_device_train_batch_size=0 is not valid: use an integer >= 1"),
        (["seed=-5"], r"seed=-5 is not valid: use an integer >= 0"),
        (["lora.r=0"], r"lora.r=0 is not valid: use an integer >= 1"),
        (["lora.dropout=1.5"], r"lora.dropout=1.5 is not valid: use a number in \[0, 1\)"),
        (["eval.limit=0"], r"eval.limit=0 is not valid: use null \(every example\) or an integer >= 1"),
        (["eval.limit=-3"], r"eval.limit=-3 is not valid"),
        (["eval.batch_size=0"], r"eval.batch_size=0 is not valid: use an integer >= 1"),
        (["eval.max_new_tokens=0"], r"eval.max_new_tokens=0 is not valid: use an integer >= 1"),
        (["init=d2lora", "warmup.size=0"], r"warmup.size=0 is not valid"),
        (["method=dpo", "method.beta=nan"], r"method.beta=nan is not valid: use a number > 0"),
        (["lora.target_modules=[q_proj,qkv_proj]"], r"lora.target_modules \['qkv_proj'\] are not modules of .*'q_proj'"),
        (["eval.evaluators=[task,chat]", "eval.chat_data=null"], r"lists chat, which needs held-out chat prompts: set eval.chat_data="),
        (["train.checkpoint_every=2h"], r"train.checkpoint_every='2h' is not valid: use '<N>steps'"),
        (["train.checkpoint_keep=0"], r"train.checkpoint_keep=0 is not valid: use an integer >= 1"),
        (["eval.evaluators=[task,bleu]"], r"eval.evaluators: unknown \['bleu'\]; choose from"),
        (["eval.evaluators=[task,gsm8k]"], r"names an evaluator twice"),
        (["task=titles", "eval.evaluators=[gsm8k]"], r"score another task's held-out set; task=titles is scored by 'titles_rouge'"),
    ],
)
def test_bad_values_fail_before_training(make_cfg, monkeypatch, overrides, message):
    if "device=cuda" in overrides and __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    _no_training(monkeypatch)
    cfg = make_cfg(*overrides)
    with pytest.raises(UserError, match=message):
        recipe.run(cfg)
    # The refused run's directory says so (never a `running` left behind forever).
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["status"] == "failed" and saved["error"].startswith("UserError: ")


def test_missing_column_in_a_data_file(make_cfg, monkeypatch, tmp_path):
    bad = tmp_path / "math.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "initial_reason_steps": "", "chosen": "c", "rejected": "r", "answer": "1"}) + "\n")
    _no_training(monkeypatch)
    with pytest.raises(UserError, match=r"missing column\(s\) \['full_chosen', 'full_rejected'\]"):
        recipe.run(make_cfg(f"data.math_train.path={bad}"))


def test_titles_columns_are_configurable_and_checked(make_cfg, monkeypatch):
    _no_training(monkeypatch)
    with pytest.raises(UserError, match=r"missing column\(s\) \['summary'\].*\['title', 'abstract'\]"):
        recipe.run(make_cfg("task=titles", "task.columns.abstract=summary"))


def test_gated_model_without_token(make_cfg, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no cached login, no cached model
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    _no_training(monkeypatch)
    with pytest.raises(UserError, match=r"meta-llama/Llama-3.1-8B-Instruct is a gated model.*export HF_TOKEN"):
        recipe.run(make_cfg("model=llama3_1_8b_instruct", "device=cpu"))


@pytest.mark.parametrize("method, cls", [("sft", "SFTConfig"), ("dpo", "DPOConfig"), ("orpo", "ORPOConfig")])
def test_unknown_trl_setting_is_rejected_before_training(make_cfg, monkeypatch, method, cls):
    _no_training(monkeypatch)
    with pytest.raises(UserError, match=rf"\['learning_rte'\] are not fields of {cls}"):
        recipe.run(make_cfg(f"method={method}", "+method.args.learning_rte=1.0"))


def test_unknown_warmup_setting_is_rejected_before_training(make_cfg, monkeypatch):
    _no_training(monkeypatch)
    with pytest.raises(UserError, match=r"\['packin'\] are not fields of SFTConfig"):
        recipe.run(make_cfg("init=d2lora", "+warmup.args.packin=true"))


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "D2LORA_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "d2lora_exp", *args, f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)


@pytest.mark.e2e
def test_cli_unknown_option_in_a_group_is_one_line_with_the_choices(tmp_path):
    proc = _cli("method=ppo", tmp_path=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "d2lora_exp: error: method=ppo: no such option in conf/method/; choose one of dpo, orpo, sft."]


def test_unknown_group_options_are_found_in_plain_and_swept_overrides():
    from d2lora_exp.__main__ import unknown_group_option
    from d2lora_exp.config import config_dir

    conf = config_dir()
    assert unknown_group_option(["init=d2lora", "method=sft,dpo", "data_size=0,8", "experiment=smoke"], conf) is None
    assert unknown_group_option(["hydra/launcher=parallel", "--multirun", "method.beta=0.2"], conf) is None
    assert "task=maths: no such option" in unknown_group_option(["method=sft", "task=maths"], conf)
    assert "method=ppo: no such option" in unknown_group_option(["method=sft,ppo"], conf)
    assert "init=loraa" in unknown_group_option(["+init=loraa"], conf)


@pytest.mark.e2e
def test_cli_user_error_is_one_line_without_traceback(tmp_path):
    proc = _cli("data_size=-3", tmp_path=tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("d2lora_exp: error:")]
    assert errors == ["d2lora_exp: error: data_size=-3 is negative; use an integer >= 0 (0 evaluates the initialisation)."]
    assert "Traceback" not in proc.stderr
