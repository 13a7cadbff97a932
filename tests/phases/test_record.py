"""Resume logic: a finished result is reused or protected, a dead attempt is moved aside, never deleted."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from d2lora_exp.errors import UserError
from d2lora_exp.phases import record


def _cfg(**over):
    base = {"seed": 0, "data_size": 8, "method": {"name": "sft", "learning_rate": 1e-6}, "paths": {"output_dir": "a"},
            "wandb": {"mode": "offline"}, "sweep_name": "s", "gpu_slots": True, "run_name": "r"}
    return OmegaConf.create({**base, **over})


def test_config_hash_ignores_where_and_how_results_are_logged_but_not_what_is_computed():
    same = [_cfg(), _cfg(paths={"output_dir": "b"}, wandb={"mode": "disabled"}, sweep_name="t", gpu_slots=False)]
    assert len({record.config_hash(c) for c in same}) == 1
    assert record.config_hash(_cfg()) != record.config_hash(_cfg(method={"name": "sft", "learning_rate": 2e-6}))
    assert record.config_hash(_cfg()) != record.config_hash(_cfg(data_size=0))


def _write(out, **data):
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(data))


def test_a_finished_run_of_the_same_config_is_reused(tmp_path):
    _write(tmp_path, status="complete", config_hash="abc", metrics={"accuracy": 1.0})
    assert record.previous_result(tmp_path, "abc")["metrics"] == {"accuracy": 1.0}


def test_a_finished_run_of_another_config_is_never_overwritten(tmp_path):
    _write(tmp_path, status="complete", config_hash="abc")
    (tmp_path / "adapter").mkdir()
    with pytest.raises(UserError, match="already holds a finished run of a different config.*sweep_name"):
        record.previous_result(tmp_path, "xyz")
    assert json.loads((tmp_path / "metrics.json").read_text())["config_hash"] == "abc" and (tmp_path / "adapter").is_dir()


@pytest.mark.parametrize("status", ["running", "failed", None])
def test_a_dead_attempt_is_moved_aside_with_everything_it_wrote(tmp_path, status):
    if status is None:
        (tmp_path / "metrics.json").write_text("{trunc")  # killed mid-write by an older version
    else:
        _write(tmp_path, status=status, config_hash="abc")
    (tmp_path / "adapter").mkdir()
    (tmp_path / ".hydra").mkdir()  # this attempt's own Hydra record stays
    assert record.previous_result(tmp_path, "abc") is None
    (attempt,) = tmp_path.glob(".attempt-*")
    assert {p.name for p in attempt.iterdir()} == {"metrics.json", "adapter"}
    assert {p.name for p in tmp_path.iterdir()} == {".hydra", attempt.name}


@pytest.mark.parametrize("same_config", [True, False])
def test_an_interrupted_attempt_leaves_its_checkpoints_only_to_the_same_config(tmp_path, same_config):
    _write(tmp_path, status="interrupted", config_hash="abc")
    (tmp_path / "checkpoints" / "adapt" / "checkpoint-6").mkdir(parents=True)
    assert record.previous_result(tmp_path, "abc" if same_config else "xyz") is None
    (attempt,) = tmp_path.glob(".attempt-*")
    assert (tmp_path / "checkpoints").is_dir() == same_config
    assert (attempt / "checkpoints").is_dir() == (not same_config)  # another config's state is kept, never resumed


def test_record_is_rewritten_after_every_update_and_says_why_it_failed(tmp_path):
    rec = record.Record(_cfg(), tmp_path, "abc")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "running" and saved["config_hash"] == "abc" and saved["config"]["seed"] == 0
    rec.update(data_size=8)
    rec.fail(ValueError("bad row 3"))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "failed" and saved["error"] == "ValueError: bad row 3" and saved["data_size"] == 8
    assert not list(tmp_path.glob(".metrics.json.tmp-*"))
