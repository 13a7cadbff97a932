"""Run directories: one per process for single runs, and one live owner at a time for any run directory
(two identical runs into one directory train once: the second waits, then reuses the first's result)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.sweep

RUN = [sys.executable, "-m", "d2lora_exp", "experiment=smoke", "init=lora", "method=sft"]

# `python -c FROZEN <overrides>`: the entry point with the run directory's clock (`${d2lora_now:...}`) stopped at one instant, so that two
# processes start "in the same second" (the same microsecond, even) whatever the machine's speed.
FROZEN = """
import datetime, sys
import d2lora_exp.dist


class Frozen(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 1, 2, 3, 4, 5, 678901)


d2lora_exp.dist.datetime = Frozen
from d2lora_exp.__main__ import main

main()
"""


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "D2LORA_ROOT": str(tmp_path), "D2LORA_CACHE": str(tmp_path / "cache"),
            "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def _wait_for_running_record(path: Path, proc: subprocess.Popen) -> None:
    """Until the run has written metrics.json (status running): it then owns its directory."""
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(path.read_text()).get("status") == "running":
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{path} never said running (exit code {proc.poll()})")


def test_two_identical_runs_into_one_directory_train_once(tmp_path):
    """A requeued job racing its stale twin, or two sweeps over the same runs: the second process finds the
    directory owned by a live run, moves and writes nothing, waits, and reuses the finished result."""
    env = _env(tmp_path)
    # Caches first (model, data, evaluation), so that the paused run below holds no lock but its directory's.
    warm = subprocess.run([*RUN, f"hydra.run.dir={tmp_path / 'warm'}"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert warm.returncode == 0, warm.stderr[-3000:]
    run_dir = tmp_path / "run"
    first = subprocess.Popen([*RUN, f"hydra.run.dir={run_dir}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env)
    _wait_for_running_record(run_dir / "metrics.json", first)
    os.kill(first.pid, signal.SIGSTOP)  # the first run stays live, mid-run, while the second one starts
    try:
        second = subprocess.Popen([*RUN, f"hydra.run.dir={run_dir}"], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=env)
        seen = []
        for line in second.stdout:  # until it says it waits, or ends (today's code: it does not wait)
            seen.append(line)
            if "waiting for it to end" in line:
                break
    finally:
        os.kill(first.pid, signal.SIGCONT)
    log = "".join(seen) + second.communicate(timeout=600)[0]
    assert first.wait(timeout=600) == 0 and second.returncode == 0, log[-3000:]

    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["status"] == "complete" and saved["pid"] == first.pid  # the first trained...
    assert "already complete, skipped" in log  # ...the second reused its result
    assert not list(run_dir.glob(".attempt-*")), "the live run's files were moved aside"
    assert len(list(run_dir.rglob("adapter_model.safetensors"))) == 1
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1  # one W&B run: the one that trained
    assert [p.name for p in run_dir.glob(".hydra*")] == [".hydra"]  # the second attempt's Hydra files are gone


def test_single_runs_started_in_the_same_instant_get_their_own_directories(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", FROZEN, "experiment=smoke", "init=lora", "method=sft"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
             for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    dirs = sorted((tmp_path / "outputs" / "runs" / "2026-01-02").iterdir())
    assert len(dirs) == 2, dirs
    records = [json.loads((d / "metrics.json").read_text()) for d in dirs]
    assert all(r["status"] == "complete" for r in records)
    assert sorted(r["pid"] for r in records) == sorted(p.pid for p in procs)
    assert all(d.name.startswith("03-04-05") and d.name.endswith("_lora-sft-math-n8-s0") for d in dirs)
    assert all(len(list((d / "wandb").glob("offline-run-*"))) == 1 for d in dirs)
