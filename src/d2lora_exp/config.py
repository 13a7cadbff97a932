"""Where the Hydra configs live, the OmegaConf resolvers they use, and the checks of Hydra's output directory and
SLURM tasks.

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
    """Absolute path of a model directory shipped with the package (the miniature worlds' models)."""
    return str(PACKAGE_DIR / "bundled" / "models" / name)


def init_label(base: str, warmup: bool) -> str:
    """lora, d2lora, pissa, d2lora+pissa, ...: how results, run names and reports name an initialisation."""
    name = "lora" if base == "default" else base
    if not warmup:
        return name
    return "d2lora" if base == "default" else f"d2lora+{base}"


def warmup_label(warmup: bool, size: int | None, learning_rate: float) -> str:
    """`-wu250-lr0.001` for a run that warms up (`wuall`: the whole pool), empty for one that does not: the run-name
    suffix of the warm-up ablation (sweeps/miniature_warmup_ablation.yaml), so each warm-up setting gets its own
    directory while the LoRA runs, which have no warm-up, keep one each."""
    if not warmup:
        return ""
    return f"-wu{'all' if size is None else size}-lr{learning_rate}"


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
        message = slurm_tasks_error(config.hydra.launcher)
        if message:
            print(f"d2lora_exp: error: {message}", file=sys.stderr)
            sys.exit(2)


def slurm_tasks_error(launcher: Any) -> str | None:
    """Under hydra/launcher=slurm a job runs one process per task, each on its own GPU (dist.py): a job with GPUs needs
    as many tasks as GPUs per node, checked before any job is submitted."""
    target = str(launcher.get("_target_", ""))
    if target.endswith("LocalLauncher") and launcher.get("tasks_per_node", 1) != 1:
        # submitit's local launcher starts its tasks with SUBMITIT_LOCAL_* variables, not a SLURM step's: they would be
        # independent one-process runs of the same job writing into one directory.
        return (f"hydra.launcher.tasks_per_node={launcher.get('tasks_per_node')} with hydra/launcher=submitit_local: "
                "its tasks do not form one run; use 1 (several processes on one machine: torchrun).")
    if not target.endswith("SlurmLauncher"):
        return None
    if launcher.get("gpus_per_task") is not None:
        # SLURM would bind one GPU to each task, while each task takes the GPU of its local rank (cuda:LOCAL_RANK).
        return (f"hydra.launcher.gpus_per_task={launcher.get('gpus_per_task')}: give the job's GPUs per node instead "
                "(gpus_per_node equal to tasks_per_node); each task uses the GPU of its local rank.")
    tasks, gpus = launcher.get("tasks_per_node"), launcher.get("gpus_per_node")
    if not isinstance(tasks, int) or tasks < 1:
        return f"hydra.launcher.tasks_per_node={tasks} must be a whole number >= 1 (processes per node, one per GPU)."
    if gpus and gpus != tasks:
        return (f"hydra.launcher.tasks_per_node={tasks} with gpus_per_node={gpus}: each task trains on one GPU, so set "
                f"both to the GPUs each job uses (gpus_per_node=0: tasks on CPUs).")
    return None


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
if not OmegaConf.has_resolver("d2lora_warmup_label"):
    OmegaConf.register_new_resolver("d2lora_warmup_label", warmup_label)
if not OmegaConf.has_resolver("d2lora_gpu_count"):
    OmegaConf.register_new_resolver("d2lora_gpu_count", gpu_count)
if not OmegaConf.has_resolver("d2lora_pid"):
    OmegaConf.register_new_resolver("d2lora_pid", process_id)
if not OmegaConf.has_resolver("d2lora_now"):
    OmegaConf.register_new_resolver("d2lora_now", job_time)
if not OmegaConf.has_resolver("d2lora_process"):
    OmegaConf.register_new_resolver("d2lora_process", process_label)
