"""Compose the real Hydra configs for tests, with fast-dev overrides on the embedded tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest workers on the 2 cores: one thread each (and in every process they start)
    # gives more throughput than two workers fighting over two threads each.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from d2lora_exp.config import config_dir

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


TIERS = ("e2e", "sweep")  # anything not marked with one of these is a unit test


def pytest_collection_modifyitems(config, items):
    """Every test belongs to one tier: `unit` (seconds, no training run), `e2e` (one real run of the chain on a
    tiny model) or `sweep` (Hydra multiruns through the make targets); `make test-unit` etc. select one."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.unit)
    # Longest first, so that the two workers of `make test` finish together instead of one waiting on a straggler.
    weight = {"e2e": 0, "sweep": 1, "unit": 2}
    items.sort(key=lambda item: (next(weight[m.name] for m in item.iter_markers() if m.name in weight),
                                 "miniature" not in item.nodeid))


@pytest.fixture(scope="session")
def real_data():
    """`real_data("gsm8k/test.jsonl")`: see `_real_data`."""
    return _real_data


def _real_data(relative: str) -> Path:
    """A file of the real datasets in ../shared/data. Where it is absent the test skips on a developer's machine
    (saying where it looked) but FAILS under CI (CI=true), so the real-data checks can never stop silently."""
    path = SHARED_DATA / relative
    if not path.is_file():
        message = f"real data {path} is missing (../shared/data beside the checkout)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the real-data tests")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session", autouse=True)
def wandb_data_dir(tmp_path_factory) -> Path:
    """W&B stages the files of logged artifacts (the warm-up adapter) under WANDB_DATA_DIR until `wandb sync` uploads
    them: the tests' copies go to a temporary directory, not the user's ~/.local/share/wandb."""
    path = tmp_path_factory.mktemp("wandb-data")
    os.environ.setdefault("WANDB_DATA_DIR", str(path))
    return Path(os.environ["WANDB_DATA_DIR"])


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
