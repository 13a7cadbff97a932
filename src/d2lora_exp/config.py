"""Where the Hydra configs live, the OmegaConf resolvers they use, and the check of Hydra's output directory.

Configs sit at the repository top level (`conf/`) for editing; a wheel carries them inside the
package (`d2lora_exp/conf`, see pyproject). Importing this module registers the resolvers, so any
code that composes the configs (the entry point, tests, notebooks) must import it first.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    """The `conf/` directory: inside the installed wheel, else the source checkout's top level."""
    for candidate in (PACKAGE_DIR / "conf", PACKAGE_DIR.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no conf/config.yaml next to {PACKAGE_DIR}; reinstall d2lora_exp")


def bundled_model(name: str) -> str:
    """Absolute path of a model directory shipped with the package (the miniature world's base model)."""
    return str(PACKAGE_DIR / "bundled" / "models" / name)


def init_label(base: str, warmup: bool) -> str:
    """lora, d2lora, pissa, d2lora+pissa, ...: how results, run names and reports name an initialisation."""
    name = "lora" if base == "default" else base
    if not warmup:
        return name
    return "d2lora" if base == "default" else f"d2lora+{base}"


def gpu_count() -> int:
    """Visible GPUs (at least 1), for the parallel launcher's worker count; never initialises CUDA."""
    from .gpu_slots import visible_gpus

    return max(1, len(visible_gpus()))


class OutputDirCheck(Callback):
    """Hydra creates the run (sweep) directory before any code of ours runs, so a path under a regular file or on a
    read-only mount would end in its traceback; checked here first, it is one `d2lora_exp: error:` line, exit code 2.
    Registered in conf/hydra/default.yaml."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_or_exit(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_or_exit(config.hydra.sweep.dir, "hydra.sweep.dir")


def _check_or_exit(directory: str, setting: str) -> None:
    from .errors import UserError
    from .files import check_writable

    try:
        check_writable(Path(directory), setting)
    except UserError as err:
        print(f"d2lora_exp: error: {err}", file=sys.stderr)
        sys.exit(2)


def process_id() -> str:
    """This process's id: single-run directories are unique per process, even for two started in one second. Under
    torchrun or accelerate launch, rank 0's (dist.init broadcasts it), so that every rank of a job shares one."""
    from .dist import job_pid

    return str(job_pid())


def job_time(pattern: str) -> str:
    """The run directory's date and time: the job's start (rank 0's under a launcher; Hydra's own `now` would give
    each rank its own clock, and two ranks started a second apart two directories)."""
    from .dist import start_time

    return start_time().strftime(pattern)


def process_label() -> str:
    """Short host name and process id: unique among live processes sharing a disk (SLURM jobs on several nodes),
    for files a process writes into a run directory that another process may also be writing into."""
    return f"{socket.gethostname().split('.')[0]}-{os.getpid()}"


if not OmegaConf.has_resolver("bundled_model"):
    OmegaConf.register_new_resolver("bundled_model", bundled_model)
if not OmegaConf.has_resolver("d2lora_init_label"):
    OmegaConf.register_new_resolver("d2lora_init_label", init_label)
if not OmegaConf.has_resolver("d2lora_gpu_count"):
    OmegaConf.register_new_resolver("d2lora_gpu_count", gpu_count)
if not OmegaConf.has_resolver("d2lora_pid"):
    OmegaConf.register_new_resolver("d2lora_pid", process_id)
if not OmegaConf.has_resolver("d2lora_now"):
    OmegaConf.register_new_resolver("d2lora_now", job_time)
if not OmegaConf.has_resolver("d2lora_process"):
    OmegaConf.register_new_resolver("d2lora_process", process_label)
