"""Local sweeps on a multi-GPU node: every job gets a GPU of its own; also SLURM's local twin (submitit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict

import pytest

from d2lora_exp import gpu_slots


def test_visible_gpus_reads_the_environment(monkeypatch):
    monkeypatch.setenv("D2LORA_GPUS", "2, 5")
    assert gpu_slots.visible_gpus() == ["2", "5"]
    monkeypatch.delenv("D2LORA_GPUS")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_slots.visible_gpus() == []


def test_claim_is_a_no_op_with_fewer_than_two_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("D2LORA_GPUS", "0")
    monkeypatch.setattr(gpu_slots, "_claimed", None)
    assert gpu_slots.claim(tmp_path) is None


def test_two_processes_never_share_a_gpu(tmp_path):
    code = ("import sys, time; from pathlib import Path; from d2lora_exp import gpu_slots;"
            "print(gpu_slots.claim(Path(sys.argv[1]), 0.05), flush=True); time.sleep(2)")
    env = {**os.environ, "D2LORA_GPUS": "0,1"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    claimed = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert claimed == ["0", "1"]


def _env(tmp_path):
    return {**os.environ, "D2LORA_ROOT": str(tmp_path), "D2LORA_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}


@pytest.mark.sweep
def test_parallel_launcher_gives_each_worker_its_own_gpu(tmp_path):
    env = {**_env(tmp_path), "D2LORA_GPUS": "0,1"}  # pretend two GPUs: the claim logic is the same
    proc = subprocess.run([sys.executable, "-m", "d2lora_exp", "--multirun", "hydra/launcher=parallel",
                           "experiment=smoke", "sweep_name=gpus", "data_size=0,4,8,12"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in (tmp_path / "outputs" / "sweeps" / "gpus").glob("*/metrics.json")]
    assert len(runs) == 4 and all(r["status"] == "complete" for r in runs)
    progress = json.loads((tmp_path / "outputs" / "sweeps" / "gpus" / ".progress.json").read_text())
    assert (progress["done"], progress["total"]) == (4, 4)  # counted across the worker processes
    by_pid = defaultdict(set)
    for r in runs:
        by_pid[r["pid"]].add(r["cuda_visible_devices"])
    assert all(len(gpus) == 1 for gpus in by_pid.values())  # a worker keeps its GPU
    assert set().union(*by_pid.values()) == {"0", "1"}  # the two workers got different GPUs
    assert len(by_pid) == 2


@pytest.mark.sweep
def test_submitit_local_sweep_shares_one_warmup(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "d2lora_exp", "--multirun", "hydra/launcher=submitit_local",
                           "experiment=smoke", "sweep_name=slurm", "init=d2lora", "method=sft,orpo",
                           "warmup.size=24"], capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in (tmp_path / "outputs" / "sweeps" / "slurm").glob("*/metrics.json")]
    assert len(runs) == 2 and all(r["status"] == "complete" for r in runs)
    assert len({r["pid"] for r in runs}) == 2  # separate job processes
    assert sorted(r["warmup"]["reused"] for r in runs) == [False, True]
