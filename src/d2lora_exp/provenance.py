"""Provenance: what made a result (code, libraries, machine, model, data), so a number can be traced to its source.

Recorded in every run's metrics.json (`provenance`) and W&B config, and compared across the runs of a report
table (report.py), since a difference in any of these can move a number as much as the method does (the miniature
world's accuracy moved by tens of points between CPUs). Nothing here may fail a run: what cannot be found is
recorded as null with the reason.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from . import modeling
from .fingerprint import data_identity

# The libraries whose version can change a trained adapter, a score, or the data as loaded.
LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate")
PACKAGE_DIR = Path(__file__).resolve().parent
GIT_TIMEOUT_S = 10.0
CHANGED_SHOWN = 20  # changed paths listed for a dirty tree (the diff digest covers them all)


class _GitError(Exception):
    """git could not answer; the message is the reason recorded."""


def _git(cwd: Path, *args: str) -> bytes:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
    except FileNotFoundError as err:
        raise _GitError("git is not installed (not on PATH)") from err
    except (OSError, subprocess.TimeoutExpired) as err:
        raise _GitError(f"git {args[0]} failed: {err.__class__.__name__}: {err}") from err
    if proc.returncode != 0:
        said = proc.stderr.decode(errors="replace").strip().splitlines()
        raise _GitError(f"git {args[0]} failed: {said[0] if said else f'exit code {proc.returncode}'}")
    return proc.stdout


def code_version(package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
    """The commit of the checkout the package runs from, and whether its tree differs from that commit.

    Only a checkout that tracks this very package counts: an installed copy (a wheel in site-packages, even inside
    a checkout's git-ignored .venv) has no commit, said so in `reason`. `dirty` counts untracked, not ignored files
    too (a new module changes what runs); `diff_sha256` (of `git diff HEAD`) tells two dirty trees apart."""
    try:
        top = Path(_git(package_dir, "rev-parse", "--show-toplevel").decode().strip())
        if not _git(top, "ls-files", "--", str(package_dir / "__init__.py")).strip():
            return _no_commit(f"the package at {package_dir} is not tracked by the git checkout at {top} "
                              "(an installed copy, not the checkout's source)")
        commit = _git(top, "rev-parse", "HEAD").decode().strip()
        changed = [line[3:] for line in _git(top, "status", "--porcelain").decode(errors="replace").splitlines()]
        diff = hashlib.sha256(_git(top, "diff", "HEAD", "--binary")).hexdigest() if changed else None
    except _GitError as err:
        return _no_commit(f"{package_dir} is not in a usable git checkout ({err}), e.g. an installed package")
    return {"commit": commit, "dirty": bool(changed), "changed": changed[:CHANGED_SHOWN], "changed_count": len(changed),
            "diff_sha256": diff, "reason": None}


def _no_commit(reason: str) -> dict[str, Any]:
    return {"commit": None, "dirty": None, "changed": None, "changed_count": None, "diff_sha256": None, "reason": reason}


def libraries() -> dict[str, str | None]:
    """Full versions (major.minor.patch and local tag: a CUDA build of torch says so), null where not installed."""
    import torch

    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    found["torch_cuda"] = torch.version.cuda  # the CUDA runtime torch was built with; null for a CPU build
    return found


def machine() -> dict[str, Any]:
    """The hardware a result was computed on (no hostname: which machine is private, what kind of machine is not)."""
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": usable,
            "torch_threads": torch.get_num_threads(), "system": f"{platform.system()} {platform.machine()}", **gpus()}


def cpu_model() -> str | None:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what `platform` knows), null when nothing says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def gpus() -> dict[str, Any]:
    """The GPUs torch sees (names, memory) and the NVIDIA driver, when CUDA is available."""
    import torch

    if not torch.cuda.is_available():
        return {"gpus": [], "gpu_driver": None}
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append({"name": props.name, "memory_gib": round(props.total_memory / (1 << 30), 1),
                        "capability": f"{props.major}.{props.minor}"})
    return {"gpus": devices, **nvidia_driver()}


def nvidia_driver() -> dict[str, Any]:
    """The driver version as nvidia-smi reports it (torch exposes none), or null with the reason."""
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=True)
        return {"gpu_driver": proc.stdout.strip().splitlines()[0].strip(), "gpu_driver_reason": None}
    except (OSError, subprocess.SubprocessError, IndexError) as err:
        return {"gpu_driver": None, "gpu_driver_reason": f"nvidia-smi: {err.__class__.__name__}: {err}"}


def environment() -> dict[str, Any]:
    """What is known before the run reads its config: the code, the libraries, the machine."""
    return {"code": code_version(), "libraries": libraries(), "machine": machine()}


HUB_SNAPSHOT = re.compile(r"snapshots/([0-9a-f]{40})/")


def model(model_cfg: Any, source: str, dtype: str) -> dict[str, Any]:
    """The base model: `modeling.identity` (what every cache key uses; a local directory by a digest that reads
    at most 2 MiB per weight file, or the digests build_once recorded), plus how that digest was made; a hub model
    also by the commit its files in the local HF cache come from (the revision actually loaded)."""
    found = modeling.identity(model_cfg, source, dtype)
    local = Path(os.path.expanduser(source))
    if local.is_dir():
        return {**found, "path": str(local), "digest_method": modeling.fingerprint_method(local)}
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(str(model_cfg.name_or_path), "config.json", revision=model_cfg.get("revision"))
    match = HUB_SNAPSHOT.search(str(cached).replace(os.sep, "/")) if isinstance(cached, str) else None
    return {**found, "resolved_commit": match.group(1) if match else None,
            "resolved_commit_reason": None if match else "its config.json is not in the local Hugging Face cache"}


def data(plan: Any) -> dict[str, Any]:
    """Every dataset the run read, by role: a local file by the sha256 of its bytes (read whole anyway to load it),
    a hub dataset by its id, split and configured revision. `eval.<name>`: the data identities that evaluator's
    cache key hashes (its `material`)."""
    cfg = plan.cfg
    used = {"adapt": cfg.task.train.data}
    if plan.warmup is not None:
        used["warmup"] = cfg.warmup.data
    if plan.calibration_texts is not None:
        used["calibration"] = cfg.calibration.data
    from omegaconf import OmegaConf

    found: dict[str, Any] = {}
    for role, source in used.items():
        resolved = OmegaConf.to_container(source, resolve=True)
        found[role] = {"path": str(resolved["path"]), **data_identity(resolved)}
    for evaluator in plan.evaluators:
        found[f"eval.{evaluator.name}"] = identities(evaluator.material())
    return found


def identities(obj: Any) -> list[dict[str, Any]]:
    """The data identities inside a content config (`content_config`): local files and hub datasets, once each."""
    found: list[dict[str, Any]] = []
    if isinstance(obj, dict):
        if "content_sha256" in obj or ("path" in obj and isinstance(obj.get("path"), str)):
            return [obj]
        for value in obj.values():
            found += [i for i in identities(value) if i not in found]
    elif isinstance(obj, list):
        for value in obj:
            found += [i for i in identities(value) if i not in found]
    return found


def of_plan(plan: Any) -> dict[str, Any]:
    """What the prepared run adds: the base model and the data."""
    return {"model": model(plan.cfg.model, plan.model_source, plan.dtype_name), "data": data(plan)}


# Comparing runs (report.py): what must agree across the runs of one table for its numbers to be comparable.


def labels(recorded: dict[str, Any] | None) -> dict[str, str] | None:
    """A run's provenance as short labels: its machine (CPU model and count, GPUs), each library's version and its
    code (commit, `+dirty:<diff digest>` for a tree with changes); None for a run that recorded none."""
    if not recorded:
        return None
    found = recorded.get("machine") or {}
    gpus = ", ".join(g.get("name", "?") for g in found.get("gpus") or [])
    out = {"machine": f"{found.get('cpu')} x{found.get('cpu_count')}" + (f" + {gpus}" if gpus else "")}
    out.update({name: str(value) for name, value in (recorded.get("libraries") or {}).items()})
    code = recorded.get("code") or {}
    dirty = f"+dirty:{(code.get('diff_sha256') or '')[:8]}" if code.get("dirty") else ""
    out["commit"] = f"{code['commit'][:12]}{dirty}" if code.get("commit") else "none (not run from a git checkout)"
    return out


def differences(runs: list[dict[str, str] | None]) -> str | None:
    """One line naming every label that differs across `runs` and how many runs have each value; None when they
    all agree. Runs that recorded no provenance are counted, never taken to agree."""
    recorded = [run for run in runs if run is not None]
    missing = len(runs) - len(recorded)
    if not recorded:
        return f"none of these {len(runs)} runs records its provenance (machine, libraries, commit): whether they agree is unknown"
    parts = []
    for key in dict.fromkeys(k for run in recorded for k in run):  # first-seen order: machine, libraries, commit
        counts = Counter(run.get(key, "not recorded") for run in recorded)
        if len(counts) > 1:
            parts.append(f"{key} " + ", ".join(f"`{value}` ({n} run{'s' if n > 1 else ''})" for value, n in counts.most_common()))
    if missing:
        parts.append(f"{missing} of {len(runs)} runs record no provenance")
    return "; ".join(parts) or None
