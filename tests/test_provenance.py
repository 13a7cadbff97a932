"""Provenance: the commit, libraries, machine, model and data behind a result, recorded in every metrics.json."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import d2lora_exp
from d2lora_exp import provenance, recipe

REPO = Path(__file__).resolve().parents[1]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _checkout(root: Path) -> Path:
    """A git checkout holding a package `pkg/` (committed) and an ignored `.venv/` with an installed copy of it."""
    pkg = root / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    (root / ".gitignore").write_text(".venv/\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    installed = root / ".venv" / "site-packages" / "pkg"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("x = 1\n")
    return pkg


def test_a_checkout_records_its_head_and_tells_dirty_trees_apart(tmp_path):
    pkg = _checkout(tmp_path)
    clean = provenance.code_version(pkg)
    assert clean["commit"] == _git(tmp_path, "rev-parse", "HEAD") and clean["dirty"] is False
    assert clean["reason"] is None and clean["diff_sha256"] is None
    (pkg / "__init__.py").write_text("x = 2\n")
    edited = provenance.code_version(pkg)
    assert edited["dirty"] is True and edited["changed"] == ["pkg/__init__.py"] and edited["commit"] == clean["commit"]
    (pkg / "__init__.py").write_text("x = 3\n")
    assert provenance.code_version(pkg)["diff_sha256"] != edited["diff_sha256"]  # two different edits of one commit
    (pkg / "__init__.py").write_text("x = 1\n")
    (pkg / "new_module.py").write_text("")  # untracked, not ignored: it can change what runs
    assert provenance.code_version(pkg)["dirty"] is True


def test_no_checkout_an_installed_copy_or_no_git_is_null_with_the_reason(tmp_path, monkeypatch):
    pkg = _checkout(tmp_path / "repo")
    installed = provenance.code_version(tmp_path / "repo" / ".venv" / "site-packages" / "pkg")
    assert installed["commit"] is None and "not tracked by the git checkout" in installed["reason"]
    outside = tmp_path / "elsewhere" / "pkg"
    outside.mkdir(parents=True)
    (outside / "__init__.py").write_text("")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # the test's own tmp dir may sit in a checkout
    loose = provenance.code_version(outside)
    assert loose["commit"] is None and loose["dirty"] is None and "not in a usable git checkout" in loose["reason"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert "git is not installed" in provenance.code_version(pkg)["reason"]


def test_libraries_and_machine_are_the_ones_running():
    found = provenance.libraries()
    assert found["python"] == platform.python_version()
    assert {k: found[k] for k in provenance.LIBRARIES} == {k: version(k) for k in provenance.LIBRARIES}
    host = provenance.machine()
    assert host["cpu_count"] == os.cpu_count() and host["torch_threads"] == torch.get_num_threads()
    assert 1 <= host["cpus_usable"] <= host["cpu_count"] and "hostname" not in json.dumps(host)
    if not torch.cuda.is_available():
        assert host["gpus"] == [] and host["gpu_driver"] is None


def test_gpus_are_named_with_the_driver_or_the_reason_it_is_unknown(monkeypatch, tmp_path):
    props = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=80 << 30, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\necho 550.54.15\necho 550.54.15\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(smi.parent))
    found = provenance.gpus()
    assert found["gpus"] == [{"name": "NVIDIA H100 80GB HBM3", "memory_gib": 80.0, "capability": "9.0"}] * 2
    assert found["gpu_driver"] == "550.54.15"
    smi.unlink()
    missing = provenance.gpus()
    assert missing["gpu_driver"] is None and "nvidia-smi" in missing["gpu_driver_reason"]


def test_a_hub_model_is_recorded_with_the_commit_its_cached_files_come_from(monkeypatch, tmp_path):
    from huggingface_hub import constants
    from omegaconf import OmegaConf

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--org--model"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    cfg = OmegaConf.create({"name_or_path": "org/model", "revision": None})
    found = provenance.model(cfg, "org/model", "bfloat16")
    assert (found["name_or_path"], found["resolved_commit"], found["resolved_commit_reason"]) == ("org/model", commit, None)
    absent = provenance.model(OmegaConf.create({"name_or_path": "org/other", "revision": None}), "org/other", "bfloat16")
    assert absent["resolved_commit"] is None and "not in the local Hugging Face cache" in absent["resolved_commit_reason"]


def _recorded(cpu="AMD EPYC", torch_version="2.13.0", commit="a" * 40, dirty=False):
    return {"machine": {"cpu": cpu, "cpu_count": 2, "gpus": []},
            "libraries": {"python": "3.11.7", "torch": torch_version, "trl": "1.16.0"},
            "code": {"commit": commit, "dirty": dirty, "diff_sha256": "d" * 64 if dirty else None}}


def test_differences_name_what_differs_and_how_many_runs_each():
    same = [provenance.labels(_recorded()) for _ in range(3)]
    assert provenance.differences(same) is None
    mixed = same + [provenance.labels(_recorded(cpu="Intel Xeon", torch_version="2.11.0", dirty=True))]
    line = provenance.differences(mixed)
    assert line == ("machine `AMD EPYC x2` (3 runs), `Intel Xeon x2` (1 run); torch `2.13.0` (3 runs), `2.11.0` (1 run); "
                    f"commit `{'a' * 12}` (3 runs), `{'a' * 12}+dirty:dddddddd` (1 run)")
    assert provenance.differences([*same, None]) == "1 of 4 runs record no provenance"
    assert "none of these 2 runs records its provenance" in provenance.differences([None, None])


@pytest.mark.e2e
def test_a_run_records_what_made_it_and_identical_runs_fed_the_same_tokens(make_cfg):
    from test_recipe import wandb_runs

    assert Path(d2lora_exp.__file__).resolve().is_relative_to(REPO)  # the tests run the checkout's own source
    runs = []
    for out in ("a", "b"):
        cfg = make_cfg("init=lora", "method=sft", out=out)
        runs.append((cfg, recipe.run(cfg)))
    (cfg, first), (_, second) = runs
    made = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["provenance"]
    assert made["code"]["commit"] == _git(REPO, "rev-parse", "HEAD")
    assert made["code"]["dirty"] == bool(_git(REPO, "status", "--porcelain"))
    assert made["libraries"]["torch"] == version("torch") and made["libraries"]["python"] == platform.python_version()
    assert made["machine"]["cpu_count"] == os.cpu_count() and made["machine"]["torch_threads"] == torch.get_num_threads()
    # The data by the sha256 of the files themselves; the model by the digest the cache keys use, and how it was made.
    sha = lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert made["data"]["adapt"]["content_sha256"] == sha(cfg.task.train.data.path)
    assert made["data"]["eval.gsm8k"] == [{"content_sha256": sha(cfg.task.eval.data.path), "split": "train"}]
    assert made["model"]["content"] and "build_once" in made["model"]["digest_method"]
    phases = made["phases"]
    assert all(phases[p]["host_peak_rss_mib"] > 0 for p in ("checks", "load_model", "adapt", "eval"))
    tokens = phases["adapt"]["tokens"]
    assert tokens["non_padding"] > 0 and tokens["padding"] == tokens["positions"] - tokens["non_padding"] >= 0
    assert phases["adapt"]["total_flos"] > 0 and tokens == first["adapt"]["tokens"]
    # TRL's own running count of the real tokens agrees with ours.
    assert [h["num_tokens"] for h in first["adapt"]["log_history"] if "num_tokens" in h][-1] == tokens["non_padding"]
    assert second["provenance"]["phases"]["adapt"]["tokens"] == tokens
    assert second["provenance"]["phases"]["adapt"]["total_flos"] == phases["adapt"]["total_flos"]
    logged = wandb_runs(Path(cfg.paths.output_dir))["lora-sft-math-n8-s0"]
    assert logged["config"]["provenance.code.commit"] == made["code"]["commit"]
    assert logged["summary"]["resources/adapt/tokens/non_padding"] == tokens["non_padding"]


@pytest.mark.e2e
def test_orpo_and_the_warmup_count_their_tokens_too(make_cfg):
    result = recipe.run(make_cfg("init=d2lora", "method=orpo"))
    phases = result["provenance"]["phases"]
    for phase in ("warmup", "adapt"):
        assert phases[phase]["tokens"]["non_padding"] > 0 and phases[phase]["tokens"] == result[phase]["tokens"]
    assert phases["adapt"]["tokens"]["positions"] > phases["adapt"]["tokens"]["non_padding"]  # chosen/rejected padded
    # What the Trainer reports, recorded as is (README): its FLOP estimate needs `input_ids`, which ORPO's batches lack.
    assert phases["adapt"]["total_flos"] == 0 and phases["warmup"]["total_flos"] > 0
    assert result["provenance"]["data"]["warmup"]["content_sha256"] == hashlib.sha256(
        Path(result["provenance"]["data"]["warmup"]["path"]).read_bytes()).hexdigest()
