"""The speed defaults on CUDA, each decided by one function of speed.py: asserted on CPU by the decision it takes
for a CUDA device, with what is installed mocked."""

from __future__ import annotations

import pytest
import torch

from d2lora_exp import modeling, recipe, speed, training
from d2lora_exp.errors import UserError
from d2lora_exp.phases import adapt
from d2lora_exp.phases.prepare import prepare


def test_weights_load_straight_to_this_process_gpu_in_bf16(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")  # the second process of `torchrun --nproc-per-node 2` on this node
    assert speed.load_kwargs("cuda", torch.bfloat16) == {"dtype": torch.bfloat16, "device_map": {"": "cuda:1"}}
    monkeypatch.delenv("LOCAL_RANK")
    assert speed.load_kwargs("cuda", torch.bfloat16)["device_map"] == {"": "cuda:0"}
    assert speed.load_kwargs("cpu", torch.float32) == {"dtype": torch.float32}  # CPU: loaded where it is


@pytest.mark.parametrize("setting, device, installed, expected", [
    ("auto", "cuda", True, True), ("auto", "cuda", False, False), ("auto", "cpu", True, False),
    (True, "cuda", True, True), (False, "cuda", True, False),
])
def test_liger_where_installed_on_cuda(monkeypatch, setting, device, installed, expected):
    monkeypatch.setattr(speed, "liger_installed", lambda: installed)
    assert speed.liger(setting, device) is expected


def test_liger_true_without_it_or_without_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(speed, "liger_installed", lambda: False)
    with pytest.raises(UserError, match=r"train.liger=true but liger-kernel is not installed: `pip install -e '.\[gpu\]'`"):
        speed.liger(True, "cuda")
    monkeypatch.setattr(speed, "liger_installed", lambda: True)
    with pytest.raises(UserError, match=r"train.liger=true needs CUDA"):
        speed.liger(True, "cpu")


def test_liger_installed_reads_the_import_system(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "liger_kernel" else None)
    assert speed.liger_installed()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert not speed.liger_installed()


@pytest.mark.parametrize("method, attn, device, overlong, expected", [
    ("sft", "flash_attention_2", "cuda", "drop", True),
    ("sft", "flash_attention_3", "cuda", "error", True),
    ("sft", "sdpa", "cuda", "drop", False),  # exact but slower: SDPA computes the whole flattened row's scores
    ("sft", "flash_attention_2", "cpu", "drop", False),
    ("sft", "flash_attention_2", "cuda", "truncate", False),  # cut rows may exceed max_length, which TRL then lets pass
    ("dpo", "flash_attention_2", "cuda", "drop", False),  # TRL 1.16's DPOTrainer turns it off
    ("orpo", "flash_attention_2", "cuda", "drop", False),
])
def test_padding_free_by_default_where_attention_makes_it_fast(method, attn, device, overlong, expected):
    assert speed.padding_free("auto", method, attn, device, overlong) is expected


def test_padding_free_true_is_refused_where_it_cannot_hold():
    assert speed.padding_free(True, "sft", "sdpa", "cpu", "drop") is True
    assert speed.padding_free(False, "sft", "flash_attention_2", "cuda", "drop") is False
    with pytest.raises(UserError, match=r"method=dpo has no padding-free batches"):
        speed.padding_free(True, "dpo", "sdpa", "cpu", "drop")
    with pytest.raises(UserError, match=r"train.overlong=truncate"):
        speed.padding_free(True, "sft", "sdpa", "cpu", "truncate")


def test_length_grouping_is_offered_not_defaulted():
    assert speed.group_by_length(False, "sft") == {}
    assert speed.group_by_length(True, "sft") == {"train_sampling_strategy": "group_by_length"}
    # Preference rows keep their `length` column through the Trainer's column removal.
    assert speed.group_by_length(True, "dpo") == {"train_sampling_strategy": "group_by_length",
                                                  "remove_unused_columns": False}


def test_a_cuda_phase_gets_the_speed_defaults_as_trl_arguments(make_cfg, tmp_path, monkeypatch):
    """What trainer_args hands TRL on CUDA with flash-attention and Liger installed: Liger and padding-free SFT (the
    warm-up too), no padding-free for DPO; the speed settings themselves never reach TRL."""
    monkeypatch.setattr(speed, "liger_installed", lambda: True)
    cfg = make_cfg("model.attn_implementation=flash_attention_2", "init=d2lora")
    sft = training.trainer_args(cfg, tmp_path, cfg.method, "cuda", torch.bfloat16, "method")
    assert sft["use_liger_kernel"] is True and sft["padding_free"] is True and sft["max_length"] == 1024
    assert not set(training.SPEED) - {"padding_free"} & set(sft)
    warm = training.trainer_args(cfg, tmp_path, cfg.warmup, "cuda", torch.bfloat16, "warmup")
    assert warm["padding_free"] is True
    dpo = make_cfg("model.attn_implementation=flash_attention_2", "method=dpo")
    assert "padding_free" not in training.trainer_args(dpo, tmp_path, dpo.method, "cuda", torch.bfloat16, "method")
    cpu = training.trainer_args(cfg, tmp_path, cfg.method, "cpu", torch.float32, "method")
    assert cpu["use_liger_kernel"] is False and "padding_free" not in cpu


@pytest.mark.e2e
def test_padding_free_setting_runs_the_warmup_and_sft_padding_free(make_cfg):
    """train.padding_free=true on CPU (exact there, tests/methods/test_sft.py): both SFT phases train padding-free,
    TRL gets no max_length and the rows were held to it before (train.overlong=drop counts the longer ones)."""
    result = recipe.run(make_cfg("init=d2lora", "train.padding_free=true", "train.max_length=155"))
    for phase in ("adapt", "warmup"):
        args = result["trl_args"][phase]
        assert args["padding_free"] is True and args["max_length"] is None
    assert result["adapt"]["steps"] > 0 and result["overlong"]["adapt"] + result["overlong"]["warmup"] > 0


@pytest.mark.e2e
@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_group_by_length_batches_rows_of_similar_length(make_cfg, tmp_path, method):
    from transformers.trainer_pt_utils import LengthGroupedSampler

    cfg = make_cfg(f"method={method}", "train.group_by_length=true", "data_size=32")
    plan = prepare(cfg, tmp_path / "run")
    assert ("length" in plan.train_rows.column_names) == (method == "dpo")
    model = modeling.load_model(plan.model_source, cfg.model, plan.device, plan.dtype)
    model, _ = adapt.start_adapter(plan, model, None)
    trainer = plan.method.build_trainer(model, plan.tokenizer, plan.train_rows, plan.adapt_config, cfg.method, [])
    assert isinstance(trainer._get_train_sampler(trainer.train_dataset), LengthGroupedSampler)
    next(iter(trainer.get_train_dataloader()))  # the collator takes rows that keep their `length` column
