"""Compose the real Hydra configs for tests, with fast-dev overrides on the embedded tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("WANDB_SILENT", "true")

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from d2lora_exp.config import config_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Small enough for seconds per run on 2 CPU cores, large enough that every phase really runs.
FAST = [
    "data_size=8",
    "method.num_train_epochs=1",
    "train.per_device_train_batch_size=4",
    "train.logging_steps=1",
    "eval.limit=4",
    "eval.max_new_tokens=8",
    "warmup.size=12",
    "wandb.mode=offline",
]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real data shipped beside the checkout (../shared/data); tests using it skip where it is absent."""
    return SHARED_DATA


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One tiny model build for the whole session."""
    return tmp_path_factory.mktemp("cache")


def compose_cfg(overrides: list[str], out_dir: Path, cache: Path, fast: bool = True):
    """The config `python -m d2lora_exp <overrides>` would run, with its outputs under out_dir.

    Fast configs run the smoke world (the 0.1M random model and bundled files) unless the test names
    another experiment; `fast=False` composes exactly what the command line would."""
    overrides = list(overrides)
    base = FAST if fast else []
    if fast and not any(o.startswith("experiment=") for o in overrides):
        base = ["experiment=smoke", *base]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=base + overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
        cfg.paths.cache_dir = str(cache)
        cfg.model.name_or_path = str(cache / "models" / "tiny-llama") if cfg.model.build else cfg.model.name_or_path
        del cfg["hydra"]
    return cfg


@pytest.fixture
def make_cfg(tmp_path, cache_dir):
    def _make(*overrides: str, fast: bool = True, out: str = "run"):
        return compose_cfg(list(overrides), tmp_path / out, cache_dir, fast=fast)

    return _make
