"""The sweep callback: the job count a sweep announces, and progress counted across job processes."""

from __future__ import annotations

import json
import logging
import time

import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from d2lora_exp.sweep_callback import PROGRESS, JobFailure, SweepReport, sweep_size


def _config(tmp_path, params: dict, task_overrides: list[str], job: str = "job0"):
    return OmegaConf.create({"sweep_name": "s", "hydra": {
        "sweeper": {"params": params}, "overrides": {"task": task_overrides},
        "sweep": {"dir": str(tmp_path / "sweep")}, "runtime": {"output_dir": str(tmp_path / "sweep" / job)}}})


def test_sweep_size_is_the_product_of_swept_values_and_the_command_line_wins(tmp_path):
    params = {"init": "lora,d2lora", "method": "sft,dpo,orpo", "data_size": "0,1000"}
    assert sweep_size(_config(tmp_path, params, [])) == 12
    assert sweep_size(_config(tmp_path, params, ["method=sft", "seed=0,1,2"])) == 2 * 1 * 2 * 3
    assert sweep_size(_config(tmp_path, {}, ["lr=choice(1,2)", "x=range(0,4)"])) == 8


def test_progress_counts_finished_and_already_complete_jobs(tmp_path, caplog):
    callback = SweepReport()
    callback.on_multirun_start(_config(tmp_path, {"data_size": "0,1,2"}, []))
    done_before = tmp_path / "sweep" / "job1"
    done_before.mkdir(parents=True)
    (done_before / "metrics.json").write_text("{}")  # written before the job started: resumed, not recomputed
    time.sleep(0.01)
    with caplog.at_level(logging.INFO, logger="d2lora_exp.sweep_callback"):
        for job in ("job0", "job1"):
            cfg = _config(tmp_path, {"data_size": "0,1,2"}, [], job)
            callback.on_job_start(cfg)
            if job == "job0":
                (tmp_path / "sweep" / job).mkdir(parents=True)
                (tmp_path / "sweep" / job / "metrics.json").write_text("{}")
            callback.on_job_end(cfg, None)
    state = json.loads((tmp_path / "sweep" / PROGRESS).read_text())
    assert (state["total"], state["done"], state["skipped"]) == (3, 2, 1)
    assert "2/3 runs done (1 already complete)" in caplog.text


def test_failed_jobs_are_reported_after_the_others_and_the_sweep_exits_1(tmp_path, caplog):
    """A refused job's metrics.json is an older finished result: the job counts as failed, not as already complete."""
    callback = SweepReport()
    callback.on_multirun_start(_config(tmp_path, {"data_size": "0,1"}, []))
    refused = tmp_path / "sweep" / "job1"
    refused.mkdir(parents=True)
    (refused / "metrics.json").write_text(json.dumps({"status": "complete"}))
    time.sleep(0.01)
    cfg = _config(tmp_path, {"data_size": "0,1"}, [], "job1")
    callback.on_job_start(cfg)
    failure = JobFailure("job1", str(refused), "UserError: holds a finished run of a different config")
    callback.on_job_end(cfg, JobReturn(status=JobStatus.COMPLETED, _return_value=failure))
    state = json.loads((tmp_path / "sweep" / PROGRESS).read_text())
    assert (state["done"], state["skipped"], len(state["failed"])) == (1, 0, 1)

    config = OmegaConf.merge(cfg, {"wandb": {"enabled": False}})
    with caplog.at_level(logging.INFO, logger="d2lora_exp.sweep_callback"), pytest.raises(SystemExit) as exited:
        callback.on_multirun_end(config)
    assert exited.value.code == 1
    assert "1 of 2 runs failed" in caplog.text and f"job1: {failure.error}" in caplog.text
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert f"`job1` (`{refused}`): {failure.error}" in report
