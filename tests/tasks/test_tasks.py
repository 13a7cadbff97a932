"""Task row builders and the titles hold-out, on the smoke world's files (the real schemas)."""

from __future__ import annotations

import csv
from collections import Counter

import pytest
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from d2lora_exp import tiny_model
from d2lora_exp.config import config_dir
from d2lora_exp.data import build
from d2lora_exp.errors import UserError
from d2lora_exp.tasks import get_task


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return AutoTokenizer.from_pretrained(tiny_model.build(tmp_path_factory.mktemp("m") / "tiny"))


SMOKE: dict = {}


@pytest.fixture(scope="module", autouse=True)
def smoke_world(tmp_path_factory):
    """The smoke world (conf/data/smoke.yaml's sizes), written as a run writes it."""
    cfg = OmegaConf.load(config_dir() / "data" / "smoke.yaml")
    cfg.build.dir = str(tmp_path_factory.mktemp("smoke") / "world")
    SMOKE["dir"] = build.ensure(cfg).path


def smoke_path(name: str) -> str:
    return str(SMOKE["dir"] / name)


def _math(**extra):
    return get_task(OmegaConf.create({"name": "math", "train": {"data": {"path": smoke_path("math_step_dpo.jsonl")}},
                                      "eval": {"data": {"path": smoke_path("gsm8k_test.jsonl")}}, **extra}))


def _titles(holdout_seed=42):
    return get_task(OmegaConf.create({
        "name": "titles", "train": {"data": {"path": smoke_path("econ_titles.csv")}},
        "eval": {"holdout": 100, "holdout_seed": holdout_seed}, "columns": {"abstract": "abstract", "title": "title"},
        "instruction": "Title: "}))


def test_math_sft_learns_the_whole_solution_by_default(tok):
    task = _math()
    rows = task.train_pool().select(range(5))
    sft = task.sft_rows(rows, tok)
    for row, built in zip(rows, sft):
        assert built["completion"] == row["initial_reason_steps"] + row["full_chosen"]
        assert built["prompt"].startswith(tok.bos_token) and row["prompt"] in built["prompt"]
        assert built["prompt"].endswith("<|assistant|>")
    only = _math(sft_target="full_chosen").sft_rows(rows, tok)
    assert only["completion"] == rows["full_chosen"]
    with pytest.raises(UserError, match="sft_target"):
        _math(sft_target="steps").sft_rows(rows, tok)


def test_math_preference_rows_share_the_prefix_and_compare_whole_solutions_by_default(tok):
    task = _math()
    rows = task.train_pool().select(range(5))
    for row, built in zip(rows, task.preference_rows(rows, tok)):
        assert built["prompt"].endswith("<|assistant|>" + row["initial_reason_steps"])
        # the rest of each solution, so the EOS that TRL appends comes after the answer, not mid-solution
        assert (built["chosen"], built["rejected"]) == (row["full_chosen"], row["full_rejected"])
    for row, built in zip(rows, _math(preference_target="step").preference_rows(rows, tok)):
        assert (built["chosen"], built["rejected"]) == (row["chosen"], row["rejected"])
    with pytest.raises(UserError, match="preference_target"):
        _math(preference_target="steps").preference_rows(rows, tok)


def test_titles_holdout_is_fixed_and_never_in_the_training_pool():
    task = _titles()
    pool, held = task.train_pool(), task.eval_set()
    assert len(held) == 100 and len(pool) + len(held) == 400
    # The hold-out and the pool split the file's rows. (Not compared by title: the world's titles repeat,
    # 400 rows have about 190 distinct titles, and some (title, abstract) pairs repeat whole.)
    with open(smoke_path("econ_titles.csv"), newline="", encoding="utf-8") as f:
        rows = Counter((r["title"], r["abstract"]) for r in csv.DictReader(f))
    assert Counter(zip(pool["title"], pool["abstract"])) + Counter(zip(held["title"], held["abstract"])) == rows
    again = _titles()
    assert again.eval_set()["title"] == held["title"]
    assert _titles(holdout_seed=7).eval_set()["title"] != held["title"]
