"""Every config option composes, and the CLI documents itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from d2lora_exp.config import config_dir
from d2lora_exp.phases import record

GROUPS = ["model", "init", "method", "task", "data", "experiment"]  # tuned, experiment_method: tests below


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes(make_cfg, group):
    """Each option is selected, its plain values land in the composed config, and every interpolation resolves."""
    for option in _options(group):
        # Under the paper preset no tuned/<data>_<method> file applies, so a method's own values must show, but
        # for those the preset itself chooses for that method (experiment_method/paper_<method>.yaml).
        base = [] if group == "experiment" else ["experiment=paper"]
        cfg = make_cfg(*base, f"{group}={option}", fast=False)
        resolved = OmegaConf.to_container(cfg, resolve=True)  # raises on a broken interpolation
        own = OmegaConf.to_container(OmegaConf.load(config_dir() / group / f"{option}.yaml"))
        preset = config_dir() / "experiment_method" / f"paper_{option}.yaml"
        if group == "method" and preset.is_file():
            own = {k: v for k, v in own.items() if k not in OmegaConf.load(preset)}
        target = resolved if group == "experiment" else resolved[group]  # experiments are `@package _global_`
        for key, value in own.items():
            if key != "defaults" and not (isinstance(value, str) and "${" in value):
                assert _contains(target[key], value), (group, option, key)


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


def test_the_paper_preset_takes_the_base_model_as_dpo_reference_as_the_trl_of_its_time_did(make_cfg):
    """experiment=paper reproduces early-2025 TRL (adapter disabled = base model as reference), not TRL 1.16's
    frozen copy of the trained adapter; only for DPO, and the command line still wins."""
    assert make_cfg("experiment=paper", "method=dpo", "init=d2lora", fast=False).method.reference == "base"
    assert make_cfg("experiment=paper", "method=dpo", "method.reference=init", fast=False).method.reference == "init"
    for other in ("sft", "orpo"):
        assert "reference" not in make_cfg("experiment=paper", f"method={other}", fast=False).method
    for preset in ("miniature", "miniature_v3", "smoke"):
        assert make_cfg(f"experiment={preset}", "method=dpo", fast=False).method.reference == "init"
    assert {p.stem for p in (config_dir() / "experiment_method").glob("*.yaml")} == {"paper_dpo"}


def test_default_is_the_embedded_miniature_world(make_cfg):
    """A plain run is world v5 (its instruction-tuned model, its data); world v3 stays one preset away."""
    cfg = make_cfg(fast=False)
    assert cfg.model.name == "tiny-world-v5" and os.path.isfile(os.path.join(cfg.model.name_or_path, "model.safetensors"))
    assert cfg.data.build.kind == "miniature" and cfg.data.build.world == 5 and cfg.device == "cpu"
    assert cfg == make_cfg("experiment=miniature_v5", fast=False)  # the pinned name is the default, nothing else
    assert cfg.method.learning_rate > 1e-4  # the miniature's own rates, not the 8B model's 1e-6
    v3 = make_cfg("experiment=miniature_v3", fast=False)
    assert v3.model.name == "tiny-world-llama" and "world" not in v3.data.build and v3.data.build.dir != cfg.data.build.dir
    assert (v3.data_size, v3.eval.max_new_tokens, cfg.data_size, cfg.eval.max_new_tokens) == (2000, 64, 1000, 128)
    # World v3's DPO adds the chosen answer's NLL (TRL's sigmoid+sft); the paper preset keeps plain DPO.
    dpo = make_cfg("experiment=miniature_v3", "method=dpo", fast=False).method
    assert list(dpo.args.loss_type) == ["sigmoid", "sft"] and list(dpo.args.loss_weights) == [0.1, 1.0]
    assert dict(make_cfg("method=sft", fast=False).method.args) == {}
    assert dict(make_cfg("experiment=paper", "method=dpo", fast=False).method.args) == {}
    smoke = make_cfg("experiment=smoke", fast=False)
    # World v3's generator at small sizes (the tests' world), not the default's v5.
    assert smoke.model.build == "tiny_llama" and smoke.data.build.kind == "miniature" and "world" not in smoke.data.build
    assert smoke.data.build.dir != cfg.data.build.dir


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "d2lora_exp", *args], capture_output=True, text=True, timeout=120)


def test_cli_help_lists_groups_and_cfg_prints_the_composed_job():
    help_text = _cli("--help").stdout
    for group in ["model", "init", "method", "task", "data"]:
        assert f"{group}:" in help_text
    assert "init: corda, d2lora, eva, lora, olora, pissa" in help_text and "dpo, orpo, sft" in help_text
    job = _cli("--cfg", "job", "init=d2lora", "method=orpo", "data_size=100").stdout
    assert "name: d2lora" in job and "name: orpo" in job and "data_size: 100" in job


def _contains(actual, expected) -> bool:
    """`expected` (from an option file) is part of `actual` (the composed config), interpolations aside."""
    if isinstance(expected, dict):
        return all(_contains(actual[k], v) for k, v in expected.items() if not (isinstance(v, str) and "${" in v))
    return actual == expected


def test_tuned_values_come_from_the_data_x_method_specialisation(make_cfg):
    """conf/tuned/<data>_<method>.yaml applies to its world and method only; the command line wins over it."""
    tuned = {p.stem for p in (config_dir() / "tuned").glob("*.yaml")}
    assert tuned == {"miniature_sft", "miniature_dpo", "miniature_orpo", "miniature_v5_sft", "miniature_v5_dpo",
                     "miniature_v5_orpo"}
    settings = {(e, m): (c.method.learning_rate, c.method.num_train_epochs, list(c.method.args.get("loss_type", [])))
                for e in ("miniature", "miniature_v3") for m in ("sft", "dpo", "orpo")
                for c in [make_cfg(f"experiment={e}", f"method={m}", fast=False)]}
    nll = ["sigmoid", "sft"]
    assert settings == {("miniature", "sft"): (1e-2, 10, []), ("miniature", "dpo"): (1e-2, 4, nll),
                        ("miniature", "orpo"): (1e-2, 10, []),  # world v5's own files, for world v5 only
                        ("miniature_v3", "sft"): (1e-2, 3, []), ("miniature_v3", "dpo"): (1e-2, 1, nll),
                        ("miniature_v3", "orpo"): (2e-2, 1, [])}
    assert make_cfg("method=orpo", "method.learning_rate=5e-3", fast=False).method.learning_rate == 5e-3
    assert make_cfg("experiment=smoke", "method=orpo", fast=False).method.learning_rate == 1e-6  # no tuned file
    assert "miniature" not in make_cfg(fast=False)  # no preset table left for generic code to know about


def test_data_size_zero_is_one_run_per_method_with_its_own_hash(make_cfg):
    """n=0 runs are named and hashed like any other (they share one cached evaluation, not one directory)."""
    cfgs = [make_cfg("data_size=0", f"method={m}", fast=False) for m in ("sft", "dpo")]
    assert [c.run_name for c in cfgs] == ["lora-sft-math-n0-s0", "lora-dpo-math-n0-s0"]
    assert record.config_hash(cfgs[0]) != record.config_hash(cfgs[1])
    a, b = (make_cfg("data_size=100", "method=dpo", *o, fast=False) for o in ([], ["method.args.loss_weights=[1.0,1.0]"]))
    assert record.config_hash(a) != record.config_hash(b)
