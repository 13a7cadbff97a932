"""Sweeps on a real SLURM cluster (`../shared/slurm/local-cluster.sh start`: slurmctld + slurmd + munge on this
machine, partition `debug`, no GPU), not only `submitit_local`: a job requeued in the middle of its adaptation
(`scontrol requeue`, SLURM's SIGTERM) and a job that reaches its time limit (submitit's USR2) both save a
checkpoint, come back, resume and end with the adapter of a run that was never interrupted.

The cluster needs root. Where it cannot start, the tests skip and say why; under CI (`CI=true`) they fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock

pytestmark = pytest.mark.sweep

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO.parent / "shared" / "slurm" / "local-cluster.sh"
SLOW_STEPS = Path(__file__).with_name("slow_steps")
# One job: LoRA + SFT on 32 rows, 2 epochs of 8 steps, slowed down by tests/slow_steps so a signal lands mid-phase.
RUN = ["experiment=smoke", "init=lora", "method=sft", "data_size=32", "method.num_train_epochs=2", "wandb.mode=offline"]
ON_SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]


def _cannot(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"SLURM tests cannot run: {reason}; CI must run them")
    pytest.skip(f"SLURM tests need a local cluster: {reason}")


@pytest.fixture(scope="session")
def _cluster_started() -> None:
    if os.geteuid() != 0:
        _cannot("not root (local-cluster.sh installs and starts slurmctld, slurmd and munge)")
    if not CLUSTER.is_file():
        _cannot(f"{CLUSTER} is missing")
    # The node gets `nproc` CPUs, and nproc obeys OMP_NUM_THREADS, which tests/conftest.py sets to 1: started from
    # here with it, the node had 1 CPU and the two-task job pended for ever (reason PartitionConfig; seen in CI).
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
    with FileLock("/tmp/d2lora_exp-slurm-cluster.lock"):  # two pytest workers start it once
        proc = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0 or "debug" not in proc.stdout:
        _cannot(f"local-cluster.sh start failed: {(proc.stdout + proc.stderr)[-1500:]}")


def _node_cpus() -> int:
    return int(subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, check=True).stdout.split()[0])


@pytest.fixture
def slurm_cluster(_cluster_started, tmp_path):
    """The cluster, to one test at a time: its one node has this machine's 2 CPUs, so a job of two tasks waits for
    every other test's job, and one requeued until its time limit tests end (up to 30 allocations) can hold it past
    any timeout (seen in CI: the two-task job pending for 10 minutes beside the time-limit test on the other worker).
    Whatever job a test leaves behind is cancelled, so that it cannot hold the node for the next test."""
    with FileLock("/tmp/d2lora_exp-slurm-node.lock"):
        yield
        jobs = sorted({job for sweep in tmp_path.glob("outputs/sweeps/*") for job in _job_ids(sweep)})
        if jobs:
            subprocess.run(["scancel", *jobs], capture_output=True)


def _queue(sweep_dir: Path) -> str:
    """What a test that timed out prints: the queue and the tail of its jobs' logs (why a job is pending, or where it
    hangs)."""
    queue = subprocess.run(["squeue", "-o", "%i %T %r %M %C"], capture_output=True, text=True).stdout
    logs = sorted((sweep_dir / ".submitit").glob("*/*_log.*")) if (sweep_dir / ".submitit").is_dir() else []
    return queue + "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in logs)


def _env(root: Path, step_seconds: float) -> dict:
    return {**os.environ, "D2LORA_ROOT": str(root), "D2LORA_CACHE": str(root / "cache"), "WANDB_SILENT": "true",
            "OMP_NUM_THREADS": "1", "D2LORA_TEST_STEP_SECONDS": str(step_seconds),
            "PYTHONPATH": os.pathsep.join(p for p in (str(SLOW_STEPS), os.environ.get("PYTHONPATH")) if p)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The same run, here and without interruption: the reference every resumed run must equal."""
    root = tmp_path_factory.mktemp("reference")
    proc = subprocess.run([sys.executable, "-m", "d2lora_exp", *RUN, f"hydra.run.dir={root / 'run'}"],
                          capture_output=True, text=True, env=_env(root, 0), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((root / "run" / "metrics.json").read_text())


def _job_ids(sweep_dir: Path) -> list[str]:
    folder = sweep_dir / ".submitit"
    return sorted({p.name.split("_")[0] for p in folder.iterdir() if p.name[0].isdigit()}) if folder.is_dir() else []


def _release_requeued(sweep_dir: Path, launcher: subprocess.Popen) -> None:
    """SLURM holds a requeued job for a while (reason BeginTime); a test cannot wait minutes, so start it now."""
    while launcher.poll() is None:
        for job in _job_ids(sweep_dir):
            state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%r"], capture_output=True, text=True).stdout
            if "BeginTime" in state:
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        time.sleep(1)


def _sweep(root: Path, name: str, step_seconds: float, *overrides: str, during=None) -> tuple[Path, str]:
    sweep_dir = root / "outputs" / "sweeps" / name
    launcher = subprocess.Popen([sys.executable, "-m", "d2lora_exp", "--multirun", *RUN, *ON_SLURM, f"sweep_name={name}",
                                 *overrides], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=_env(root, step_seconds))
    releaser = threading.Thread(target=_release_requeued, args=(sweep_dir, launcher), daemon=True)
    releaser.start()
    if during is not None:
        during(sweep_dir)
    try:
        out, _ = launcher.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        launcher.kill()
        pytest.fail(f"the sweep did not end in 600 s:\n{_queue(sweep_dir)}")
    assert launcher.returncode == 0, out[-4000:]
    return sweep_dir, out


def _attempts(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run_dir.glob(".attempt-*/metrics.json"))]


def _same_as(resumed: dict, reference: dict) -> None:
    assert resumed["status"] == "complete" and resumed["adapt"]["resumed_from_step"] > 0
    assert resumed["adapt"]["digest"] == reference["adapt"]["digest"]
    assert resumed["metrics"] == reference["metrics"]
    assert resumed["adapt"]["train_loss"] == pytest.approx(reference["adapt"]["train_loss"], rel=1e-9)


def test_a_job_requeued_mid_adaptation_resumes_from_its_checkpoint(slurm_cluster, uninterrupted, tmp_path):
    def requeue_once_training(sweep_dir: Path) -> None:
        deadline = time.time() + 300
        while not list(sweep_dir.glob("*/checkpoints/adapt/checkpoint-*")) and time.time() < deadline:
            time.sleep(0.2)
        (job,) = _job_ids(sweep_dir)
        subprocess.run(["scontrol", "requeue", job], check=True)

    sweep_dir, out = _sweep(tmp_path, "requeued", 0.5, "train.checkpoint_every=2steps", during=requeue_once_training)
    run_dir = sweep_dir / "lora-sft-math-n32-s0"
    (first,) = _attempts(run_dir)
    assert first["status"] == "interrupted" and first["error"].startswith("SIGTERM received; stopped in the adapt phase")
    resumed = json.loads((run_dir / "metrics.json").read_text())
    _same_as(resumed, uninterrupted)
    assert resumed["wandb_run"]["id"] == first["wandb_run"]["id"]  # one W&B run, resumed
    assert (sweep_dir / "report.md").is_file() and "sweep requeued: " in out


def test_a_job_at_its_time_limit_checkpoints_and_is_requeued(slurm_cluster, uninterrupted, tmp_path):
    # slurmctld checks time limits every 30 s and signals a job once `now + 30 s + signal_delay` passes its end:
    # with a 1-minute limit and a 25 s delay, USR2 comes 5 to 35 s after the start, after submitit's handler is
    # in place (a delay of 30 s or more would signal the job as it starts, killing Python before any handler).
    # 16 steps of 2.5 s cannot finish in one allocation, so the job is requeued until it is done (up to 30 times: on a
    # loaded machine an allocation can end before the run reaches its first step, which makes no progress).
    sweep_dir, _ = _sweep(tmp_path, "timeout", 2.5, "train.checkpoint_every=null", "hydra.launcher.timeout_min=1",
                          "hydra.launcher.signal_delay_s=25", "hydra.launcher.max_num_timeout=30")
    run_dir = sweep_dir / "lora-sft-math-n32-s0"
    attempts = _attempts(run_dir)  # a signal before the run began is submitit's alone: no attempt directory
    assert attempts and all(a["status"] == "interrupted" and a["error"].startswith("SIGUSR2 received; stopped ")
                            for a in attempts)
    assert any("after saving a checkpoint" in a["error"] for a in attempts)
    _same_as(json.loads((run_dir / "metrics.json").read_text()), uninterrupted)


# One run on 2 tasks of one job (gloo on CPU): LoRA + SFT on 8 rows, dropout off and a learning rate that moves the
# adapter far in 2 steps (as tests/test_distributed.py).
TASKS = ["experiment=smoke", "device=cpu", "init=lora", "method=sft", "lora.dropout=0", "method.learning_rate=1e-2",
         "train.per_device_train_batch_size=2", "wandb.mode=offline"]


def test_a_job_of_two_tasks_trains_one_run_on_both(slurm_cluster, tmp_path):
    """hydra.launcher.tasks_per_node=2: submitit starts 2 tasks, which join one DDP run from SLURM's variables and give
    the adapter of one process with the same global batch (2 x 2 by gradient accumulation)."""
    from safetensors.torch import load_file

    cpus = _node_cpus()
    assert cpus >= 2, f"the node has {cpus} CPU(s): a job of 2 tasks of 1 CPU would pend for ever"
    reference = tmp_path / "reference"  # its own cache: the job must evaluate, not reuse this run's evaluation
    proc = subprocess.run([sys.executable, "-m", "d2lora_exp", *TASKS, "train.gradient_accumulation_steps=2",
                           f"hydra.run.dir={reference}", f"paths.cache_dir={tmp_path / 'own-cache'}"],
                          capture_output=True, text=True, env=_env(tmp_path, 0), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep_dir = tmp_path / "outputs/sweeps/tasks"
    try:
        launcher = subprocess.run([sys.executable, "-m", "d2lora_exp", "--multirun", *TASKS, *ON_SLURM,
                                   "sweep_name=tasks", "hydra.launcher.tasks_per_node=2"], capture_output=True, text=True,
                                  env=_env(tmp_path, 0), timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the two-task sweep did not end in 600 s:\n{_queue(sweep_dir)}")
    assert launcher.returncode == 0, (launcher.stdout + launcher.stderr)[-4000:]
    run_dir = sweep_dir / "lora-sft-math-n8-s0"
    ours, theirs = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, reference))
    assert ours["status"] == "complete" and (ours["world_size"], theirs["world_size"]) == (2, 1)
    assert ours["adapt"]["steps"] == theirs["adapt"]["steps"] == 2  # 8 rows, global batch 4
    (job,) = _job_ids(sweep_dir)
    assert sorted(p.name for p in (sweep_dir / ".submitit" / job).glob("*_result.pkl")) == [
        f"{job}_0_result.pkl", f"{job}_1_result.pkl"]  # two tasks of one job
    trained, expected = (load_file(str(d / "adapter" / "adapter_model.safetensors")) for d in (run_dir, reference))
    assert trained.keys() == expected.keys()
    assert max(float((trained[k] - expected[k]).abs().max()) for k in trained) <= 1e-6  # measured: 0.0
    assert max(float(t.abs().max()) for k, t in trained.items() if "lora_B" in k) > 1e-3  # it trained
    assert ours["metrics"] == theirs["metrics"] and ours["evaluation"]["rows_by_rank"] == {"gsm8k": [2, 2]}
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1 and not list(run_dir.glob(".hydra-*"))
    assert json.loads((sweep_dir / ".progress.json").read_text())["done"] == 1  # counted once, not per task


def test_slurm_tasks_per_node_must_match_the_gpus_before_any_job_is_submitted(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "d2lora_exp", "--multirun", "experiment=smoke", "hydra/launcher=slurm",
                           "hydra.launcher.tasks_per_node=2", "hydra.launcher.gpus_per_node=1", "sweep_name=refused"],
                          capture_output=True, text=True, env=_env(tmp_path, 0), timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "d2lora_exp: error: hydra.launcher.tasks_per_node=2 with gpus_per_node=1: each task trains on one GPU, so set "
        "both to the GPUs each job uses (gpus_per_node=0: tasks on CPUs)."]
    assert not (tmp_path / "outputs/sweeps/refused/.submitit").exists()
