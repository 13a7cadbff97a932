"""Rank roles without a process group: what the main rank alone does, and what the number of processes changes
(the two-process runs themselves are in test_distributed.py)."""

from __future__ import annotations

from d2lora_exp import tracking
from d2lora_exp.phases import record


def test_the_number_of_processes_is_part_of_the_config_hash_and_the_strategy_is_not(make_cfg, monkeypatch):
    one = record.config_hash(make_cfg())
    assert record.config_hash(make_cfg("dist=fsdp")) == one  # how processes share work changes no number
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert record.config_hash(make_cfg()) != one  # the global batch doubles


def test_only_the_main_rank_writes_metrics_json_and_opens_wandb_runs(make_cfg, monkeypatch, tmp_path):
    cfg = make_cfg()
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    rec = record.Record(cfg, out, "digest")
    rec.update(status="complete")
    assert rec.data["status"] == "complete" and not (out / "metrics.json").exists()
    assert tracking.start(cfg.wandb, "offline", out, "name", "adapt", [], {}) is None
    assert not (out / "wandb").exists()
    monkeypatch.setenv("RANK", "0")
    record.Record(cfg, out, "digest")
    assert (out / "metrics.json").is_file()
