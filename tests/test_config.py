"""Every config option composes, and the CLI documents itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from d2lora_exp import resume
from d2lora_exp.config import config_dir

GROUPS = ["model", "init", "method", "task", "data", "experiment"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes(make_cfg, group):
    for option in _options(group):
        cfg = make_cfg(f"{group}={option}", fast=False)
        assert cfg.run_name  # interpolations resolve


def test_paper_defaults(make_cfg):
    cfg = make_cfg("experiment=paper", "init=d2lora", "method=orpo", "data_size=2000", fast=False)
    assert cfg.model.name_or_path == "meta-llama/Llama-3.1-8B-Instruct" and cfg.model.gated
    assert cfg.data.math_train.path == "xinlai/Math-Step-DPO-10K"
    assert cfg.data.warmup.path == "mlabonne/orpo-dpo-mix-40k"
    assert (cfg.lora.r, cfg.lora.alpha) == (16, 16)
    assert (cfg.warmup.learning_rate, cfg.warmup.num_train_epochs) == (1e-7, 1)
    assert (cfg.method.learning_rate, cfg.method.num_train_epochs, cfg.method.beta) == (1e-6, 4, 0.1)
    assert cfg.device == "cuda" and cfg.data_size == 2000
    sft = make_cfg("experiment=paper", "method=sft", fast=False).method
    assert (sft.learning_rate, sft.num_train_epochs) == (1e-6, 3)
    assert make_cfg("method=dpo", fast=False).method.reference == "init"


def test_default_is_the_embedded_miniature_world(make_cfg):
    cfg = make_cfg(fast=False)
    assert cfg.model.name == "tiny-world-llama" and os.path.isfile(os.path.join(cfg.model.name_or_path, "model.safetensors"))
    assert cfg.data.build.kind == "miniature" and cfg.device == "cpu"
    assert cfg.method.learning_rate > 1e-4  # the miniature's own rates, not the 8B model's 1e-6
    # The miniature's DPO adds the chosen answer's NLL (TRL's sigmoid+sft); the paper preset keeps plain DPO.
    dpo, sft = make_cfg("method=dpo", fast=False).method, make_cfg("method=sft", fast=False).method
    assert list(dpo.args.loss_type) == ["sigmoid", "sft"] and list(dpo.args.loss_weights) == [0.1, 1.0]
    assert dict(sft.args) == {}
    assert dict(make_cfg("experiment=paper", "method=dpo", fast=False).method.args) == {}
    smoke = make_cfg("experiment=smoke", fast=False)
    assert smoke.model.build == "tiny_llama" and os.path.isfile(smoke.data.math_train.path)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "d2lora_exp", *args], capture_output=True, text=True, timeout=120)


def test_cli_help_lists_groups_and_cfg_prints_the_composed_job():
    help_text = _cli("--help").stdout
    for group in ["model", "init", "method", "task", "data"]:
        assert f"{group}:" in help_text
    assert "init: corda, d2lora, eva, lora, olora, pissa" in help_text and "dpo, orpo, sft" in help_text
    job = _cli("--cfg", "job", "init=d2lora", "method=orpo", "data_size=100").stdout
    assert "name: d2lora" in job and "name: orpo" in job and "data_size: 100" in job


def test_run_hash_sees_the_resolved_method_not_the_miniature_table(make_cfg):
    """n=0 trains nothing, so the miniature's per-method table (lr, args) must not split its shared run;
    at n>0 the same change is a different run for DPO, and the same run for the methods it does not feed."""
    hashes = {resume.config_hash(make_cfg("experiment=miniature", "data_size=0", *o, fast=False))
              for o in ([], ["method=dpo"], ["miniature.args.dpo.loss_weights=[1.0,1.0]"])}
    assert len(hashes) == 1
    trained = [resume.config_hash(make_cfg("experiment=miniature", "data_size=100", "method=dpo", *o, fast=False))
               for o in ([], ["miniature.args.dpo.loss_weights=[1.0,1.0]"])]
    assert trained[0] != trained[1]
    sft = {resume.config_hash(make_cfg("experiment=miniature", "data_size=100", "method=sft", *o, fast=False))
           for o in ([], ["miniature.args.dpo.loss_weights=[1.0,1.0]"])}
    assert len(sft) == 1
