"""Each bad input stops before any training with one message that names the fix."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from omegaconf import open_dict

from d2lora_exp import recipe, tiny_model
from d2lora_exp.build_once import MARKER
from d2lora_exp.data import build as data_build
from d2lora_exp.errors import UserError
from d2lora_exp.files import read_jsonl, write_jsonl
from d2lora_exp.fingerprint import dir_digests
from d2lora_exp.phases.record import config_hash

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
        (["data_size=abc"], r"data_size='abc' is not valid: use an integer >= 0 or `all` \(the whole training pool\)"),
        (["data_size=2.5"], r"data_size=2.5 is not valid: use an integer >= 0 or `all`"),
        (["data_size=5000"], r"data_size=5000 exceeds the 1200 rows of the math training pool; use data_size <= 1200"),
        (["task=titles", "data_size=301"], r"exceeds the 300 rows of the titles training pool"),
        (["device=cuda"], r"device=cuda was requested but no CUDA GPU.*pass device=cpu"),
        (["task=titles", "method=dpo"], r"task 'titles' has no preference pairs.*use method=sft"),
        (["method=orpo", "train.max_length=64"],
         r"all 8 math training rows are longer than train.max_length=64 tokens \(prompt \+ answer, shortest \d+\), so "
         r"train.overlong=drop leaves nothing to train on: raise train.max_length"),
        (["method=orpo", "train.max_length=64", "train.overlong=error"],
         r"8 of 8 math training rows are longer than train.max_length=64 tokens .*set train.overlong=drop or truncate"),
        (["init=d2lora", "+warmup.args.max_length=64", "train.overlong=error"], r"\d+ of 12 warm-up rows are longer than"),
        (["train.overlong=cut"], r"train.overlong='cut' is not valid: use drop, truncate or error"),
        (["wandb.mode=onlin"], r"wandb.mode='onlin' is not valid: use auto, online, offline or disabled"),
        (["wandb.probe_timeout_s=0"], r"wandb.probe_timeout_s=0 is not valid: use a number > 0"),
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
        (["+method.args.output_dir=/tmp/shared"], r"method.args sets \['output_dir'\]: checkpoints, reporting and "
                                                  r"sharding belong to the recipe"),
        (["init=d2lora", "+warmup.args.save_total_limit=1"], r"warmup.args sets \['save_total_limit'\]"),
        (["+train.resume_from_checkpoint=/x"], r"train sets \['resume_from_checkpoint'\]"),
        (["eval.evaluators=[task,bleu]"], r"eval.evaluators: unknown \['bleu'\]; choose from"),
        (["eval.evaluators=[task,gsm8k]"], r"names an evaluator twice"),
        (["task=titles", "eval.evaluators=[gsm8k]"], r"score another task's held-out set; task=titles is scored by 'titles_rouge'"),
        (["task.eval.checker=[ours,mathverify]"], r"task.eval.checker: unknown \['mathverify'\]; choose from \['ours', 'math_verify'\]"),
        (["eval.evaluators=[]", "task.eval.checker=[ours,mathverify]"], r"task.eval.checker: unknown \['mathverify'\]"),
        (["task.eval.checker=[math_verify]"], r"task.eval.checker=\['math_verify'\] lacks ours, .*write \[ours,math_verify\]"),
        (["task.eval.checker=math_verify"], r"task.eval.checker='math_verify' is not a list: write e.g. "
                                            r"task.eval.checker=\[ours,math_verify\]"),
        (["task.eval.checker=[ours,ours]"], r"task.eval.checker=\['ours', 'ours'\] names a checker twice"),
        (["eval.engine=harness"], r"eval.engine='harness' is not valid: use hf or vllm"),
        (["eval.engine=vllm"], r"eval.engine=vllm needs vLLM on a CUDA machine: `pip install vllm` \(or use eval.engine=hf\)"),
        (["eval.harness.tasks=gsm8k"], r"eval.harness.tasks='gsm8k' is not valid: use a list of lm-evaluation-harness task"),
        (["eval.harness.tasks=[gsm8kk]"], r"eval.harness.tasks: \['gsm8kk'\] are not lm-evaluation-harness tasks"),
        (["eval.harness.tasks=[ai2_arc]"], r"eval.harness.tasks: \['ai2_arc'\] are groups or tags; name their tasks"),
        (["eval.harness.tasks=[arc_easy]", "eval.harness.data_files={gsm8k: {test: x.jsonl}}"],
         r"eval.harness.data_files names \['gsm8k'\], which eval.harness.tasks=\['arc_easy'\] does not run"),
        (["eval.harness.tasks=[arc_easy]", "eval.harness.data_files={arc_easy: {test: /nonexistent/arc.jsonl}}"],
         r"eval.harness.data_files.arc_easy: no such file /nonexistent/arc.jsonl"),
        (["eval.harness.num_fewshot=-1"], r"eval.harness.num_fewshot=-1 is not valid: use null"),
        (["method=dpo", "method.precompute_ref=maybe"], r"method.precompute_ref='maybe' is not valid: use auto, true or false"),
        (["method=dpo", "+method.args.precompute_ref_log_probs=true"],
         r"method.args sets precompute_ref_log_probs: use method.precompute_ref=auto\|true\|false"),
        (["method=dpo", "method.precompute_ref=true", "+method.args.sync_ref_model=true"],
         r"method.precompute_ref=true with method.args.sync_ref_model=true: a reference that moves cannot be precomputed"),
        (["train.liger=yes"], r"train.liger='yes' is not valid: use auto, true or false"),
        (["train.liger=true"], r"train.liger=true needs CUDA \(Liger's kernels are Triton GPU kernels\)"),
        (["train.padding_free=1"], r"train.padding_free=1 is not valid: use auto, true or false"),
        (["method=orpo", "train.padding_free=true"], r"train.padding_free=true: method=orpo has no padding-free batches"),
        (["train.padding_free=true", "train.overlong=truncate"], r"train.padding_free=true with train.overlong=truncate"),
        (["+method.args.padding_free=true", "train.overlong=truncate"],
         r"method.args sets padding_free with train.overlong=truncate"),
        (["train.group_by_length=auto"], r"train.group_by_length='auto' is not valid: use true or false"),
        (["+data.build.world=4"], r"data.build.world=4: choose one of \[3, 5\]"),
        (["dist.strategy=zero3"], r"dist.strategy='zero3' is not one of \['ddp', 'fsdp'\]: use dist=ddp"),
        (["dist=fsdp", "dist.fsdp_config.version=1"], r"dist.fsdp_config.version=1 is not supported: use 2"),
        (["dist=fsdp", "dist.fsdp_config.reshard_after_forward=yes"],
         r"dist.fsdp_config.reshard_after_forward='yes' is not valid: use true or false"),
        (["dist=fsdp", "+dist.fsdp_config.transformer_layer_cls_to_wrap=3"],
         r"dist.fsdp_config.transformer_layer_cls_to_wrap=3 is not valid: use a class name or a list of them"),
        (["dist=fsdp", "++dist.fsdp_config.activation_checkpointing=true"],
         r"dist.fsdp_config.activation_checkpointing=true is not supported yet"),
        (["dist=fsdp", "+dist.fsdp_config.sync_module_states=true"],
         r"dist.fsdp_config.sync_module_states is not a setting this project passes to FSDP"),
        (["dist=fsdp", "init=pissa"], r"init.base=pissa is not supported with dist=fsdp"),
        (["dist=fsdp", "init=eva"], r"init.base=eva is not supported with dist=fsdp"),
        (["+method.args.fsdp_config={}"], r"method.args sets \['fsdp_config'\]: checkpoints, reporting and sharding"),
    ],
)
def test_bad_values_fail_before_training(make_cfg, monkeypatch, overrides, message):
    if "device=cuda" in overrides and __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    if "eval.engine=vllm" in overrides and __import__("importlib.util").util.find_spec("vllm") is not None:
        pytest.skip("this machine has vLLM")
    _no_training(monkeypatch)
    cfg = make_cfg(*overrides)
    with pytest.raises(UserError, match=message):
        recipe.run(cfg)
    # The refused run's directory says so (never a `running` left behind forever).
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["status"] == "failed" and saved["error"].startswith("UserError: ")


@pytest.mark.parametrize("broken, message", [
    ("missing", r"lists math_verify, which is not installed .*pip install 'math-verify\[antlr4_9_3\]'"),
    ("no_latex", r"lists math_verify, which cannot parse LaTeX here .*pip install 'math-verify\[antlr4_9_3\]'"),
])
def test_math_verify_that_cannot_work_is_refused_before_training(make_cfg, monkeypatch, broken, message):
    """Without its package, or with an antlr4 runtime its LaTeX parser was not built for (where `parse` would
    quietly find no answer in every LaTeX reply), asking for the math_verify checker stops before the model."""
    import math_verify

    if broken == "missing":
        monkeypatch.setitem(sys.modules, "math_verify", None)
    else:
        monkeypatch.setattr(math_verify, "parse", lambda text: [])
    _no_training(monkeypatch)
    with pytest.raises(UserError, match=message):
        recipe.run(make_cfg("task.eval.checker=[ours,math_verify]"))


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


def _cli(*args: str, tmp_path: Path, run_dir: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "D2LORA_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline", **(env or {})}
    return subprocess.run([sys.executable, "-m", "d2lora_exp", *args, f"hydra.run.dir={run_dir or tmp_path / 'run'}"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The run was refused the project's way: exit code 2, no traceback, one `d2lora_exp: error:` line."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("d2lora_exp: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


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


@pytest.mark.e2e
def test_cli_data_size_neither_integer_nor_all_is_one_line_naming_both(tmp_path):
    proc = _cli("experiment=smoke", "data_size=abc", tmp_path=tmp_path)
    assert _one_error_line(proc) == ("d2lora_exp: error: data_size='abc' is not valid: use an integer >= 0 or `all` "
                                     "(the whole training pool).")


# --- the model directory ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", ['{"architectures": ["LlamaForCausalLM"], "hidden_si', "{}", ""])
def test_corrupted_model_config_is_one_line_naming_the_file(make_cfg, monkeypatch, tmp_path, content):
    """A local model whose config.json was cut short (a copy interrupted on a cluster, a full disk) or emptied."""
    model_dir = tiny_model.build(tmp_path / "copy")
    (model_dir / "config.json").write_text(content)
    _no_training(monkeypatch)
    with pytest.raises(UserError, match=re.escape(f"{model_dir / 'config.json'} is missing or not a valid model config")):
        recipe.run(make_cfg("model.build=null", f"model.name_or_path={model_dir}"))


@pytest.mark.parametrize("existing", [False, True])
def test_smoke_model_is_built_only_in_the_cache(make_cfg, monkeypatch, cache_dir, tmp_path, existing):
    """experiment=smoke builds its random model at model.name_or_path: a mistyped path must not become a new random
    model that the run silently trains, and a real model directory named by mistake must not be replaced by one."""
    tiny_model.build(cache_dir / "models" / "tiny-llama")  # what the other tests use (reused if built): suggested
    target = tmp_path / "models" / "my-llama"
    if existing:
        target.mkdir(parents=True)
        (target / "model.safetensors").write_bytes(b"my own weights")
    cfg = make_cfg()
    with open_dict(cfg):
        cfg.model.name_or_path = str(target)
    _no_training(monkeypatch)
    with pytest.raises(UserError, match=rf"builds the random smoke model only under {re.escape(str(cache_dir))}/models/ "
                                        rf"and model.name_or_path='{re.escape(str(target))}' is outside it: the models "
                                        rf"built there are .*{re.escape(str(cache_dir / 'models' / 'tiny-llama'))}.*"
                                        "set model.build=null"):
        recipe.run(cfg)
    assert (target / "model.safetensors").read_bytes() == b"my own weights" if existing else not target.exists()


# --- where the run writes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["output_dir", "cache_dir"])
@pytest.mark.parametrize("how", ["under_a_file", "read_only"])
def test_unwritable_output_or_cache_dir_fails_before_the_model_loads(make_cfg, monkeypatch, tmp_path, which, how):
    """A path under a regular file is real on any machine. A read-only mount cannot be made without privileges (and
    chmod does not stop root), so the probe's file creation fails the way it does on one: OSError(EROFS)."""
    if how == "under_a_file":
        (tmp_path / "a_file").write_text("")
        target = tmp_path / "a_file" / which
    else:
        target = tmp_path / which
        target.mkdir()
        real = tempfile.TemporaryFile

        def read_only_mount(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == target:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "TemporaryFile", read_only_mount)
    cfg = make_cfg()
    with open_dict(cfg):
        cfg.paths[which] = str(target)
    _no_training(monkeypatch)
    reason = "a file, not a directory" if how == "under_a_file" else os.strerror(errno.EROFS)
    with pytest.raises(UserError, match=rf"{re.escape(str(target))} is not writable \(.*{reason}\): point paths.{which}"):
        recipe.run(cfg)


@pytest.mark.e2e
def test_cli_run_dir_under_a_file_is_one_line(tmp_path):
    """Hydra creates the run directory before the run starts; its OSError traceback is replaced by one line."""
    (tmp_path / "a_file").write_text("")
    proc = _cli("experiment=smoke", tmp_path=tmp_path, run_dir=tmp_path / "a_file" / "run")
    assert _one_error_line(proc) == (f"d2lora_exp: error: {tmp_path / 'a_file' / 'run'} is not writable ({tmp_path / 'a_file'} "
                                     "is a file, not a directory): point hydra.run.dir at a directory this job can write.")


# --- over-long rows (train.overlong) ---------------------------------------------------------------------------

LONG = " Please read this carefully." * 20  # 560 byte-level tokens: over train.max_length=384 below


def _overlong_data(make_cfg, tmp_path: Path) -> list[str]:
    """An 8-row math pool (rows 0-2: long prompts; row 3: a long rejected answer only) and a 6-row warm-up pool
    (rows 0-1: a long user turn), as overrides."""
    cfg = make_cfg()
    data_build.ensure(cfg.data)
    math_rows = read_jsonl(Path(cfg.data.math_train.path))[:8]
    for row in math_rows[:3]:
        row["prompt"] += LONG
    math_rows[3]["rejected"] += LONG
    math_rows[3]["full_rejected"] += LONG
    chats = [r for r in read_jsonl(Path(cfg.data.warmup.path)) if r["source"] not in cfg.warmup.drop_sources][:6]
    for row in chats[:2]:
        row["chosen"][0]["content"] += LONG
    write_jsonl(tmp_path / "math.jsonl", math_rows)
    write_jsonl(tmp_path / "chats.jsonl", chats)
    return [f"data.math_train.path={tmp_path / 'math.jsonl'}", f"data.warmup.path={tmp_path / 'chats.jsonl'}",
            "train.max_length=384", "train.per_device_train_batch_size=1", "data_size=8"]


@pytest.mark.e2e
@pytest.mark.parametrize("policy, kept, warmup_kept", [("drop", 5, 4), ("truncate", 8, 6)])
def test_overlong_rows_are_dropped_or_cut_counted_and_recorded(make_cfg, tmp_path, caplog, policy, kept, warmup_kept):
    """SFT counts prompt + completion (rows 0-2 of the pool; row 3's long answer is a rejected one, not learnt by
    SFT); with one row a step, the steps prove which rows were trained on."""
    cfg = make_cfg("init=d2lora", "warmup.size=null", f"train.overlong={policy}", *_overlong_data(make_cfg, tmp_path))
    with caplog.at_level(logging.INFO, logger="d2lora_exp"):
        saved = recipe.run(cfg)
    assert saved["status"] == "complete"
    assert saved["overlong"] == {"policy": policy, "adapt": 3, "warmup": 2}
    assert (saved["data_size"], saved["train_rows"], saved["adapt"]["steps"]) == (8, kept, kept)
    assert (saved["warmup_rows"], saved["warmup"]["rows"], saved["warmup"]["steps"]) == (warmup_kept,) * 3
    assert math.isfinite(saved["adapt"]["train_loss"]) and math.isfinite(saved["warmup"]["train_loss"])
    verb = "dropped" if policy == "drop" else "cut"
    lines = [r.getMessage() for r in caplog.records if "longer than train.max_length" in r.getMessage()]
    assert lines == [f"math training: {verb} 3 of 8 rows longer than train.max_length=384 tokens (train.overlong={policy})",
                     f"warm-up: {verb} 2 of 6 rows longer than train.max_length=384 tokens (train.overlong={policy})"]


@pytest.mark.e2e
@pytest.mark.parametrize("method, policy, kept", [("dpo", "drop", 4), ("orpo", "truncate", 8)])
def test_overlong_preference_rows_count_chosen_and_rejected(make_cfg, tmp_path, method, policy, kept):
    """Row 3 fits with its chosen answer but not with its rejected one: for DPO/ORPO it is over-long too."""
    cfg = make_cfg(f"method={method}", f"train.overlong={policy}",
                   *_overlong_data(make_cfg, tmp_path))
    saved = recipe.run(cfg)
    assert saved["overlong"] == {"policy": policy, "adapt": 4, "warmup": None}
    assert (saved["train_rows"], saved["adapt"]["steps"]) == (kept, kept)
    assert math.isfinite(saved["adapt"]["train_loss"])  # no prompt filled max_length (ORPO would train on NaN)


def test_overlong_policy_changes_the_config_hash_not_the_trl_config(make_cfg):
    from d2lora_exp import training

    drop, cut = make_cfg("train.overlong=drop"), make_cfg("train.overlong=truncate")
    assert config_hash(drop) != config_hash(cut)
    assert "overlong" not in training.trainer_args(drop, Path("x"), drop.method, "cpu", __import__("torch").float32, "method")


# --- W&B without network ---------------------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DUMMY_KEY = "0123456789abcdef0123456789abcdef01234567"  # 40 characters, like a real key


@pytest.fixture
def wandb_unreachable(monkeypatch) -> str:
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("WANDB_API_KEY", DUMMY_KEY)
    monkeypatch.setenv("WANDB_BASE_URL", url)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return url


@pytest.mark.e2e
def test_wandb_auto_with_a_key_and_no_server_runs_offline(make_cfg, wandb_unreachable, caplog):
    cfg = make_cfg("wandb.mode=auto", "wandb.probe_timeout_s=2")
    started = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="d2lora_exp"):
        saved = recipe.run(cfg)
    assert time.perf_counter() - started < 120  # online, wandb retried for minutes, then killed the run
    assert saved["status"] == "complete" and saved["wandb_mode"] == "offline" and saved["timings"]["checks"] < 30
    assert [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()] == [
        f"W&B server {wandb_unreachable} unreachable within 2s: this run logs offline (sync later with `wandb sync`)"]
    out = Path(cfg.paths.output_dir)
    assert list((out / "wandb").glob("offline-run-*"))
    for path in out.rglob("*"):
        assert not path.is_file() or DUMMY_KEY.encode() not in path.read_bytes(), path


def test_wandb_online_without_its_server_is_refused_before_the_model_loads(make_cfg, monkeypatch, wandb_unreachable):
    _no_training(monkeypatch)
    with pytest.raises(UserError, match=rf"W&B server {re.escape(wandb_unreachable)} unreachable within 0.5s "
                                        r"\(wandb.mode=online\): use wandb.mode=offline \(sync later with `wandb sync`\) or auto"):
        recipe.run(make_cfg("wandb.mode=online", "wandb.probe_timeout_s=0.5"))


@pytest.mark.e2e
def test_cli_wandb_online_without_its_server_is_one_line(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    proc = _cli("experiment=smoke", "wandb.mode=online", "wandb.probe_timeout_s=0.5", tmp_path=tmp_path,
                env={"WANDB_API_KEY": DUMMY_KEY, "WANDB_BASE_URL": url})
    assert _one_error_line(proc).startswith(f"d2lora_exp: error: W&B server {url} unreachable within 0.5s")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["status"] == "failed" and "load_model" not in saved.get("timings", {})


# --- non-finite weights ----------------------------------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("data_size", [8, 0])
def test_cached_warmup_with_non_finite_weights_is_refused(make_cfg, tmp_path, data_size):
    """A warm-up entry holding NaN, its COMPLETE.json digests rewritten to match (so only a finiteness check can
    tell): no run may train from it (data_size=8) or evaluate it (data_size=0)."""
    from safetensors.torch import load_file, save_file

    def cfg_for(out: str):
        cfg = make_cfg("init=d2lora", f"data_size={data_size}", out=out)
        with open_dict(cfg):
            cfg.paths.cache_dir = str(tmp_path / "own_cache")  # never poison the session's shared warm-ups
            cfg.model.name_or_path = str(tmp_path / "own_cache" / "models" / "tiny-llama")
        return cfg

    entry = Path(recipe.run(cfg_for("first"))["warmup"]["adapter"])
    weights = entry / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(weights))
    marker = json.loads((entry / MARKER).read_text())
    marker["files"] = {k: v for k, v in dir_digests(entry).items() if k != MARKER}
    (entry / MARKER).write_text(json.dumps(marker))

    cfg = cfg_for("second")
    with pytest.raises(UserError, match=rf"{re.escape(str(weights))} holds non-finite weights \(NaN or inf in 1 tensors, "
                                        rf"first {re.escape(name)}\): remove {re.escape(str(entry))}"):
        recipe.run(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["status"] == "failed" and saved["warmup"]["reused"] and "adapt" not in saved
