"""Rank roles without a process group: what the main rank alone does, and what the number of processes changes
(the two-process runs themselves are in test_distributed.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from d2lora_exp import config, dist, tracking
from d2lora_exp.evaluation import ranks
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


# One srun step of 2 tasks on one node, as SLURM sets it for task 1 (read on the local cluster: `srun env`).
STEP = {"SLURM_JOB_ID": "34", "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_NODEID": "0",
        "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_TASKS_PER_NODE": "2", "SLURM_STEP_NODELIST": "vm"}


def test_a_slurm_step_of_several_tasks_gives_torchruns_variables():
    found = dist.slurm_variables(STEP)
    assert {k: found[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")} == {
        "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "vm"}
    assert 20000 <= int(found["MASTER_PORT"]) < 60000
    assert found["MASTER_PORT"] == dist.slurm_variables({**STEP, "SLURM_PROCID": "0"})["MASTER_PORT"]  # every task
    assert found["MASTER_PORT"] != dist.slurm_variables({**STEP, "SLURM_JOB_ID": "35"})["MASTER_PORT"]
    assert dist.slurm_variables({**STEP, "MASTER_PORT": "29500"})["MASTER_PORT"] == "29500"
    several = {**STEP, "SLURM_STEP_NUM_TASKS": "7", "SLURM_STEP_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "3",
               "SLURM_STEP_NODELIST": "gpu[07-09,12]-ib"}
    assert dist.slurm_variables(several)["LOCAL_WORLD_SIZE"] == "1"
    assert dist.slurm_variables(several)["MASTER_ADDR"] == "gpu07-ib"


def test_no_slurm_ranks_in_a_batch_script_a_single_task_or_under_torchrun():
    batch = {k: v for k, v in STEP.items() if not k.startswith("SLURM_STEP")}  # sbatch --ntasks=2, outside srun
    assert dist.slurm_variables(batch) == {}
    assert dist.slurm_variables({**STEP, "SLURM_STEP_NUM_TASKS": "1"}) == {}
    assert dist.slurm_variables({**STEP, "WORLD_SIZE": "4", "RANK": "3"}) == {}  # torchrun inside srun wins


def test_first_host_of_slurm_node_lists():
    assert [dist.first_host(n) for n in ("vm", "a1,b2", "node[3-5]", "n[010,2]x,m1")] == ["vm", "a1", "node3", "n010x"]
    with pytest.raises(ValueError):
        dist.first_host("")


def test_slurm_tasks_must_match_gpus_per_node():
    def slurm(**kw):
        return OmegaConf.create({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
                                 **kw})

    assert config.slurm_tasks_error(slurm(tasks_per_node=4, gpus_per_node=4)) is None
    assert config.slurm_tasks_error(slurm(tasks_per_node=2, gpus_per_node=0)) is None  # CPU tasks (gloo)
    assert "gpus_per_node=1" in config.slurm_tasks_error(slurm(tasks_per_node=2, gpus_per_node=1))
    assert "tasks_per_node=0" in config.slurm_tasks_error(slurm(tasks_per_node=0, gpus_per_node=0))
    assert config.slurm_tasks_error(OmegaConf.create({"_target_": "x.BasicLauncher"})) is None
    assert "gpus_per_task=1" in config.slurm_tasks_error(slurm(tasks_per_node=4, gpus_per_node=None, gpus_per_task=1))
    local = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"}
    assert config.slurm_tasks_error(OmegaConf.create({**local, "tasks_per_node": 1})) is None
    assert "submitit_local" in config.slurm_tasks_error(OmegaConf.create({**local, "tasks_per_node": 2}))


@pytest.mark.parametrize("world", [1, 2, 3])
def test_each_rank_evaluates_an_equal_share_of_every_length(monkeypatch, world):
    lengths = [5, 50, 7, 48, 30, 31, 2, 49, 8, 29]  # in data order, not sorted
    shares = []
    for rank in range(world):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        shares.append(ranks.share(lengths))
    assert sorted(i for s in shares for i in s) == list(range(len(lengths)))  # every row once
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert all([lengths[i] for i in s] == sorted((lengths[i] for i in s), reverse=True) for s in shares)
    if world == 2:  # strided over the sorted rows: both ranks get long and short ones (contiguous would not)
        assert [[lengths[i] for i in s] for s in shares] == [[50, 48, 30, 8, 5], [49, 31, 29, 7, 2]]


def test_a_documents_requests_stay_on_one_rank(monkeypatch):
    """The choices of one multiple-choice question share a context: they are computed together."""
    requests = [SimpleNamespace(task_name="arc", doc_id=d, args=(f"question {d}" * (d + 1), f" choice {c}"))
                for d in range(3) for c in range(4)]
    monkeypatch.setenv("WORLD_SIZE", "2")
    found = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        found[rank] = ranks.split_requests(requests)
    assert found[0] == ([0, 1, 2, 3, 8, 9, 10, 11], 2) and found[1] == ([4, 5, 6, 7], 1)  # docs 2 and 0; doc 1


def test_fsdp_reaches_the_trainer_only_with_several_processes(make_cfg, monkeypatch):
    """The Trainer refuses FSDP in a single process: dist=fsdp then trains as dist=ddp does (one whole model)."""
    from d2lora_exp import fsdp

    assert fsdp.trainer_args(make_cfg("dist=fsdp")) == {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = fsdp.trainer_args(make_cfg("dist=fsdp"))
    assert args["fsdp"] is True and args["fsdp_config"]["version"] == 2
    assert args["fsdp_config"]["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp.trainer_args(make_cfg()) == {}  # dist=ddp


def test_fsdp_takes_periodic_checkpoints_with_several_processes(make_cfg, monkeypatch):
    """fsdp_checkpoint.py writes them (tests/test_distributed.py resumes from them); they were refused before."""
    from d2lora_exp import fsdp

    fsdp.check(make_cfg("dist=fsdp"))  # one process: trains as dist=ddp
    monkeypatch.setenv("WORLD_SIZE", "2")
    fsdp.check(make_cfg("dist=fsdp", "train.checkpoint_every=30min"))
    fsdp.check(make_cfg("dist=fsdp", "train.checkpoint_every=null"))
