"""Resume logic: a finished result is reused or protected, a dead attempt is moved aside, never deleted."""

from __future__ import annotations

import json
import subprocess
import sys

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
    (tmp_path / ".hydra").mkdir()  # the dead attempt's Hydra record goes with it
    (tmp_path / ".hydra-node1-42").mkdir()  # this attempt's own (or a waiting one's) Hydra files stay
    (tmp_path / "d2lora_exp.log").write_text("every attempt appends\n")
    with record.owned(tmp_path):
        assert record.previous_result(tmp_path, "abc") is None
    (attempt,) = tmp_path.glob(".attempt-*")
    assert {p.name for p in attempt.iterdir()} == {"metrics.json", "adapter", ".hydra"}
    assert {p.name for p in tmp_path.iterdir()} == {".hydra-node1-42", "d2lora_exp.log", ".lock", attempt.name}


def test_an_attempt_that_runs_installs_its_hydra_files_as_the_runs_record(tmp_path):
    (tmp_path / ".hydra").mkdir()  # of an attempt killed before it wrote metrics.json
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 1\n")
    own = tmp_path / ".hydra-node1-42"
    own.mkdir()
    (own / "config.yaml").write_text("seed: 0\n")
    with record.owned(tmp_path):
        assert record.previous_result(tmp_path, "abc") is None
        record.install_hydra_files(own, tmp_path)
        record.install_hydra_files(None, tmp_path)  # outside Hydra (a test, a notebook): nothing to install
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == "seed: 0\n" and not own.exists()
    (attempt,) = tmp_path.glob(".attempt-*")
    assert (attempt / ".hydra" / "config.yaml").read_text() == "seed: 1\n"


def test_dead_attempts_cleared_in_the_same_second_keep_their_own_folders(tmp_path):
    with record.owned(tmp_path):
        for n in range(2):
            _write(tmp_path, status="failed", config_hash="abc", attempt=n)
            assert record.previous_result(tmp_path, "abc") is None
    moved = [json.loads((p / "metrics.json").read_text())["attempt"] for p in tmp_path.glob(".attempt-*")]
    assert sorted(moved) == [0, 1]


def test_the_files_of_a_live_run_are_never_moved_aside(tmp_path):
    """Another process holds the run directory's lock: its metrics.json says running because it is running."""
    _write(tmp_path, status="running", config_hash="abc")
    hold = ("import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire();"
            "print('held', flush=True); sys.stdin.read()")
    owner = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / ".lock")], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match="owned by another process.*nothing was moved"):
            record.previous_result(tmp_path, "abc")
    finally:
        owner.communicate("")
    assert not list(tmp_path.glob(".attempt-*"))
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "running"


@pytest.mark.parametrize("same_config", [True, False])
def test_an_interrupted_attempt_leaves_its_checkpoints_only_to_the_same_config(tmp_path, same_config):
    _write(tmp_path, status="interrupted", config_hash="abc")
    (tmp_path / "checkpoints" / "adapt" / "checkpoint-6").mkdir(parents=True)
    with record.owned(tmp_path):
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
