"""checkpointing.py: the schedule setting, and which checkpoint a resume may trust."""

from __future__ import annotations

import json

import pytest

from d2lora_exp import checkpointing
from d2lora_exp.fingerprint import dir_digests
from d2lora_exp.phases import record


@pytest.mark.parametrize("value, parsed", [("500steps", (500, None)), ("1step", (1, None)), ("30min", (None, 30.0)),
                                           ("0.5min", (None, 0.5)), (None, (None, None))])
def test_schedule_forms(value, parsed):
    assert checkpointing.parse_every(value) == parsed


@pytest.mark.parametrize("value", ["0steps", "1.5steps", "30", "2h", "-1min", "0min", "steps"])
def test_bad_schedules_are_refused(value):
    with pytest.raises(ValueError, match="use '<N>steps'"):
        checkpointing.parse_every(value)


def _checkpoint(root, step: int, loss: float, mark: bool = True, key: str = "run-a"):
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"w" * (100 + step))
    (path / "optimizer.pt").write_bytes(b"o" * 50)
    if mark:
        (path / checkpointing.MARK).write_text(json.dumps({"key": key, "step": step, "loss_logged": loss,
                                                           "loss_unlogged": 0.5, "last_logged": step - 1,
                                                           "files": dir_digests(path)}))
    return path


def test_latest_skips_checkpoints_cut_short_damaged_or_of_another_run(tmp_path):
    _checkpoint(tmp_path, 3, 9.0)
    six = _checkpoint(tmp_path, 6, 17.5)
    _checkpoint(tmp_path, 12, 30.0, mark=False)  # killed while saving: no mark
    nine = _checkpoint(tmp_path, 9, 25.0)
    (nine / "optimizer.pt").write_bytes(b"o" * 10)  # truncated after the mark
    _checkpoint(tmp_path, 15, 40.0, key="run-b")  # another run's (e.g. a shared directory)
    found = checkpointing.latest(tmp_path, "run-a")
    assert (found.path, found.step, found.loss_logged, found.last_logged) == (six, 6, 17.5, 5)
    assert checkpointing.latest(tmp_path, "run-b").step == 15
    assert checkpointing.latest(tmp_path / "none", "run-a") is None


def test_when_to_checkpoint_is_not_part_of_the_result(make_cfg):
    """A run resumed with another schedule is the same run (same config hash, same warm-up key)."""
    from d2lora_exp.phases import warmup

    a, b = make_cfg("train.checkpoint_every=3steps"), make_cfg("train.checkpoint_every=null", "train.checkpoint_keep=5")
    assert record.config_hash(a) == record.config_hash(b)
    assert warmup.key_material(a, "m", "float32") == warmup.key_material(b, "m", "float32")
    assert record.config_hash(a) != record.config_hash(make_cfg("train.max_length=512"))
