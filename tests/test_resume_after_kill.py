"""A run killed, preempted or timed out in the middle of a training phase resumes from its checkpoint and ends
with the adapter and metrics of a run that was never interrupted (same digest: on CPU every step is replayed
bit for bit, optimizer, scheduler, RNG and data position included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

STOPPER = Path(__file__).with_name("stop_at_step.py")
# 24 warm-up rows and 32 task rows in batches of 4: 6 warm-up steps, 16 adaptation steps (2 epochs, so the resume
# also crosses an epoch boundary); dropout 0.05 makes the RNG state matter; a loss is logged every 4 steps, so the
# first one after a resume averages steps from before and after it.
RUN = ["experiment=smoke", "init=d2lora", "data_size=32", "method.num_train_epochs=2", "warmup.size=24",
       "wandb.mode=offline", "train.logging_steps=4"]  # resume points fall inside a logging window


def _env(root: Path) -> dict:
    return {**os.environ, "D2LORA_ROOT": str(root), "D2LORA_CACHE": str(root / "cache"), "WANDB_SILENT": "true",
            "OMP_NUM_THREADS": "1"}


def _run(root: Path, run_dir: Path, *overrides: str, stop: str | None = None) -> subprocess.CompletedProcess:
    entry = [str(STOPPER), stop] if stop else ["-m", "d2lora_exp"]
    cmd = [sys.executable, *entry, *RUN, *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(root), timeout=600)


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module", autouse=True)
def parent_used_wandb(tmp_path_factory):
    """The jobs' parent has used W&B (a launcher, a notebook, the in-process tests of this suite): the address of its
    W&B service is in the environment they inherit, and a killed job's run stays open in that service."""
    import wandb

    wandb.init(mode="offline", dir=str(tmp_path_factory.mktemp("parent")), project="parent").finish()
    assert os.environ.get("WANDB_SERVICE")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("uninterrupted")
    proc = _run(root, root / "run", "train.checkpoint_every=3steps")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _metrics(root / "run")


def _same_result(resumed: dict, reference: dict) -> None:
    assert resumed["status"] == "complete"
    assert resumed["warmup"]["digest"] == reference["warmup"]["digest"]
    assert resumed["adapt"]["digest"] == reference["adapt"]["digest"]
    assert resumed["metrics"] == reference["metrics"]
    assert resumed["adapt"]["steps"] == reference["adapt"]["steps"]
    # Tokens fed and FLOPs are counted across the resume (the checkpoint carries the counts), not restarted at it.
    for phase in ("warmup", "adapt"):
        assert resumed[phase]["tokens"] == reference[phase]["tokens"] and resumed[phase]["tokens"]["non_padding"] > 0
        assert resumed[phase]["total_flos"] == reference[phase]["total_flos"] > 0
    # The Trainer restarts its loss average at the resume point; the checkpoint carries the sum before it.
    assert resumed["adapt"]["train_loss"] == pytest.approx(reference["adapt"]["train_loss"], rel=1e-9)
    reference_losses = [h["loss"] for h in reference["adapt"]["log_history"] if "loss" in h]
    assert [h["loss"] for h in resumed["adapt"]["log_history"] if "loss" in h] == reference_losses


def test_sigkill_in_the_adaptation_resumes_from_the_latest_checkpoint(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    killed = _run(tmp_path, run_dir, "train.checkpoint_every=3steps", stop="adapt:8:KILL")
    assert killed.returncode == -signal.SIGKILL
    dead = _metrics(run_dir)
    assert dead["status"] == "running"  # a SIGKILL leaves no chance to say more
    assert sorted(p.name for p in (run_dir / "checkpoints" / "adapt").glob("checkpoint-*")) == \
        ["checkpoint-3", "checkpoint-6"]  # checkpoint_keep=2

    rerun = _run(tmp_path, run_dir, "train.checkpoint_every=3steps")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "adapt: resuming from step 6" in rerun.stdout + rerun.stderr
    resumed = _metrics(run_dir)
    _same_result(resumed, uninterrupted)
    assert resumed["adapt"]["resumed_from_step"] == 6 and resumed["warmup"]["reused"] is True
    assert resumed["wandb_run"]["id"] == dead["wandb_run"]["id"] and resumed["wandb_run"]["resumed"] is True
    assert not (run_dir / "checkpoints").exists()  # removed once the adapter is saved


def test_sigkill_in_the_warmup_resumes_the_shared_warmup(tmp_path, uninterrupted):
    killed = _run(tmp_path, tmp_path / "a", "train.checkpoint_every=2steps", stop="warmup:5:KILL")
    assert killed.returncode == -signal.SIGKILL
    (checkpoints,) = (tmp_path / "cache" / "checkpoints").iterdir()
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not list((tmp_path / "cache" / "warmups").glob("*/COMPLETE.json"))  # nothing looks finished

    # Another run needing the same warm-up (another method, another directory) resumes it: one warm-up per key.
    rerun = _run(tmp_path, tmp_path / "b", "train.checkpoint_every=3steps")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "warmup: resuming from step 4" in rerun.stdout + rerun.stderr
    resumed = _metrics(tmp_path / "b")
    _same_result(resumed, uninterrupted)
    assert resumed["warmup"]["train_loss"] == pytest.approx(uninterrupted["warmup"]["train_loss"], rel=1e-9)
    assert not (tmp_path / "cache" / "checkpoints").exists()


@pytest.mark.parametrize("phase, step, sig", [("adapt", 5, "TERM"), ("warmup", 3, "USR1")])
def test_a_stop_signal_saves_a_checkpoint_marks_the_run_interrupted_and_resumes(tmp_path, uninterrupted, phase, step,
                                                                               sig):
    run_dir = tmp_path / "run"
    stopped = _run(tmp_path, run_dir, "train.checkpoint_every=null", stop=f"{phase}:{step}:{sig}")
    signum = getattr(signal, f"SIG{sig}")
    assert stopped.returncode == 128 + signum, stopped.stderr[-3000:]
    assert f"d2lora_exp: interrupted: SIG{sig} received" in stopped.stderr and "Traceback" not in stopped.stderr
    saved = _metrics(run_dir)
    assert saved["status"] == "interrupted" and f"stopped in the {phase} phase at step {step}" in saved["error"]
    where = run_dir / "checkpoints" / "adapt" if phase == "adapt" else next((tmp_path / "cache" / "checkpoints").iterdir())
    assert [p.name for p in where.glob("checkpoint-*")] == [f"checkpoint-{step}"]  # the signal's own checkpoint

    rerun = _run(tmp_path, run_dir, "train.checkpoint_every=null")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{phase}: resuming from step {step}" in rerun.stdout + rerun.stderr
    resumed = _metrics(run_dir)
    _same_result(resumed, uninterrupted)
    if phase == "adapt":  # the adaptation's W&B run goes on under the same id
        assert resumed["wandb_run"]["id"] == saved["wandb_run"]["id"] and resumed["wandb_run"]["resumed"] is True
    # The phase's cost covers the training of both attempts, like its tokens (TokenCounter carries them).
    assert resumed["cost"][phase]["seconds"] == resumed[phase]["seconds_all_attempts"] > 0
    attempts = list(run_dir.glob(".attempt-*/metrics.json"))
    assert [json.loads(p.read_text())["status"] for p in attempts] == ["interrupted"]


def test_a_signal_after_the_adaptation_keeps_its_adapter(tmp_path, uninterrupted):
    """SIGTERM at the last optimizer step: the phase's result is saved (no checkpoint needed), the run stops at the
    next phase boundary, and the rerun evaluates that adapter instead of training it again."""
    run_dir = tmp_path / "run"
    stopped = _run(tmp_path, run_dir, "train.checkpoint_every=null", stop="adapt:16:TERM")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    saved = _metrics(run_dir)
    assert saved["status"] == "interrupted" and saved["error"] == "SIGTERM received; stopped after the adaptation"
    assert (run_dir / "adapter").is_dir() and not (run_dir / "checkpoints").exists()

    rerun = _run(tmp_path, run_dir, "train.checkpoint_every=null")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = _metrics(run_dir)
    assert resumed["adapt"]["reused_from_interrupted_attempt"] is True
    assert resumed["cost"]["adapt"]["seconds"] == resumed["adapt"]["seconds_all_attempts"] > 0  # the first attempt's
    _same_result({**resumed, "adapt": {**resumed["adapt"], "resumed_from_step": 0}}, uninterrupted)
