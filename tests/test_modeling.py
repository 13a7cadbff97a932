"""A base model as cache keys see it: a local directory by its contents (wherever it lives), a hub id by name."""

from __future__ import annotations

import shutil

import pytest
import torch
from omegaconf import OmegaConf

from d2lora_exp import modeling, tiny_model

CFG = OmegaConf.create({"name_or_path": "x", "revision": None, "attn_implementation": "sdpa"})


def test_a_local_model_is_identified_by_its_contents_not_its_path(tmp_path):
    built = tiny_model.build(tmp_path / "a" / "tiny")
    moved = tmp_path / "elsewhere"
    shutil.copytree(built, moved)
    (moved / "COMPLETE.json").unlink()  # a plain copy, as a user would download one: fingerprinted file by file
    a, b = modeling.identity(CFG, str(built), "float32"), modeling.identity(CFG, str(moved), "float32")
    assert a["content"] and b["content"] and "name_or_path" not in a
    assert modeling.identity(CFG, str(moved), "float32") == b  # stable
    other = tiny_model.build(tmp_path / "b" / "tiny", seed=1)
    assert modeling.identity(CFG, str(other), "float32") != a  # other weights, other identity
    config = moved / "config.json"
    config.write_text(config.read_text().replace('"rms_norm_eps": 1e-05', '"rms_norm_eps": 1e-06'))
    assert modeling.identity(CFG, str(moved), "float32") != b
    assert modeling.identity(CFG, str(built), "bfloat16") != a


def test_a_hub_model_is_identified_by_id_and_revision():
    hub = OmegaConf.create({"name_or_path": "meta-llama/Llama-3.1-8B-Instruct", "revision": "abc", "attn_implementation": "sdpa"})
    ident = modeling.identity(hub, "meta-llama/Llama-3.1-8B-Instruct", "bfloat16")
    assert ident == {"name_or_path": "meta-llama/Llama-3.1-8B-Instruct", "revision": "abc", "dtype": "bfloat16",
                     "attn_implementation": "sdpa"}


class _Loaded:
    """What from_pretrained returns, remembering where it was moved."""

    def __init__(self) -> None:
        self.moved_to: str | None = None

    def to(self, device: str) -> _Loaded:
        self.moved_to = device
        return self


@pytest.mark.parametrize("device, dtype", [("cuda", torch.bfloat16), ("cpu", torch.float32)])
def test_weights_load_straight_to_the_gpu(monkeypatch, device, dtype):
    """On CUDA the weights are read into the GPU in bf16 (no copy in host memory, no move); on CPU as before."""
    import transformers

    calls: list[dict] = []

    def from_pretrained(source, **kwargs):
        calls.append(kwargs)
        return _Loaded()

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    model = modeling.load_model("some/model", CFG, device, dtype)
    assert calls[0]["dtype"] == dtype
    if device == "cuda":
        assert calls[0]["device_map"] == {"": "cuda:0"} and model.moved_to is None
    else:
        assert "device_map" not in calls[0] and model.moved_to == "cpu"
