"""More than one process per run (`torchrun --nproc-per-node N -m d2lora_exp ...`, `accelerate launch`): who does what.

Every rank runs the whole recipe and trains together (DDP, through the HF Trainer and accelerate); the main rank
(global rank 0) alone owns the run's files: the run directory's lock, metrics.json, the W&B runs, the cache entries
it builds (under their lock) and the checkpoint marks. Whatever one rank decides from the disk (skip a finished run,
resume a checkpoint, reuse a cached warm-up) is decided by the main rank and broadcast, so all ranks always take the
same path: a rank that took another would wait forever in a collective the others never enter.

Decisions and waits go through a gloo group of their own with a long timeout (`WAIT`): the main rank may wait hours
for another job's lock or evaluate for long while the others wait, which NCCL's or gloo's default 30 minutes would
turn into a crash. The group is joined before Hydra composes the config, so that all ranks name one run directory
after rank 0's start time and process id.

Under SLURM the ranks are the tasks of one `srun` step (`hydra/launcher=slurm hydra.launcher.tasks_per_node=N`, where
submitit starts N tasks per job, or `srun --ntasks-per-node N python -m d2lora_exp ...`): without torchrun's variables,
`init` derives them from SLURM's (slurm_variables) and the same code runs.
"""

from __future__ import annotations

import os
import pickle
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")
WAIT = timedelta(days=7)  # how long a rank waits for the main rank's decision or work (a lock, an evaluation)


class _State:
    control: Any = None  # the gloo group decisions and waits go through
    started: float | None = None  # the job's start (rank 0's clock): the run directory's time
    pid: int | None = None  # rank 0's process id: the run directory's process id


def world_size() -> int:
    """Processes in this job: WORLD_SIZE as torchrun and accelerate launch set it, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def active() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """The rank that writes files and W&B (every rank when there is one process)."""
    return rank() == 0


def slurm_variables(env: Mapping[str, str]) -> dict[str, str]:
    """torchrun's variables for a task of a SLURM step of several tasks, or {} where they do not apply (torchrun's are
    set, or this is not such a step: a batch script holds SLURM_NTASKS and SLURM_PROCID too, but no step's variables).

    The address is the step's first node (task 0 runs there); the port is MASTER_PORT if set, else derived from the
    job and step ids, so that every task computes the same one without talking to the others."""
    if "WORLD_SIZE" in env or int(env.get("SLURM_STEP_NUM_TASKS", "1")) <= 1:
        return {}
    per_node = _tasks_per_node(env["SLURM_STEP_TASKS_PER_NODE"])
    node = min(int(env.get("SLURM_NODEID", "0")), len(per_node) - 1)
    step = env.get("SLURM_STEP_ID", "0")
    port = env.get("MASTER_PORT") or str(20000 + (int(env["SLURM_JOB_ID"]) * 16 + (int(step) if step.isdigit() else 0))
                                         % 40000)
    return {"RANK": env["SLURM_PROCID"], "WORLD_SIZE": env["SLURM_STEP_NUM_TASKS"], "LOCAL_RANK": env["SLURM_LOCALID"],
            "LOCAL_WORLD_SIZE": str(per_node[node]), "MASTER_ADDR": first_host(env["SLURM_STEP_NODELIST"]),
            "MASTER_PORT": port}


def _tasks_per_node(value: str) -> list[int]:
    """SLURM's `2(x3),1` -> [2, 2, 2, 1]."""
    counts: list[int] = []
    for part in value.split(","):
        count, _, times = part.partition("(x")
        counts += [int(count)] * (int(times.rstrip(")")) if times else 1)
    return counts


def first_host(nodelist: str) -> str:
    """The first host of a SLURM host list: `gpu[07-09,12]-ib,cpu1` -> `gpu07-ib`."""
    match = re.match(r"([^,\[]*)(?:\[([^\]]+)\]([^,]*))?", nodelist)
    if not match or not match.group(1) and not match.group(2):
        raise ValueError(f"cannot read a host from SLURM's node list {nodelist!r}")
    prefix, ranges, suffix = match.groups()
    return prefix if ranges is None else prefix + re.split(r"[,-]", ranges)[0] + suffix


def init() -> bool:
    """Join the job's process group (a no-op with one process), before Hydra composes the config where the launcher
    started the ranks (torchrun, accelerate launch, srun), at the start of the job where submitit did. True if this
    call joined it (it is then this call's caller that leaves it, `finish`).

    CPU tensors go through gloo, CUDA ones through NCCL; accelerate and the Trainer reuse this group."""
    os.environ.update(slurm_variables(os.environ))
    if not active() or _State.control is not None:
        return False
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    _State.control = dist.new_group(backend="gloo", timeout=WAIT)
    _State.started, _State.pid = broadcast((time.time(), os.getpid()))
    return True


def finish() -> None:
    """Leave the process group once every rank is done (without the barrier a rank may abort at teardown)."""
    if _State.control is None:
        return
    import torch.distributed as dist

    barrier()
    dist.destroy_process_group()
    _State.control = None


def start_time() -> datetime:
    """When the job started: rank 0's clock under a launcher, else this process's first call (one instant for the
    date and the time of the run directory's name)."""
    if _State.started is None:
        _State.started = datetime.now().timestamp()
    return datetime.fromtimestamp(_State.started)


def job_pid() -> int:
    """Rank 0's process id under a launcher (every rank names the same run directory), else this process's."""
    return _State.pid if _State.pid is not None else os.getpid()


def broadcast(value: T) -> T:
    """The main rank's `value`, on every rank."""
    if _State.control is None:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=_State.control)
    return box[0]


def barrier() -> None:
    if _State.control is not None:
        import torch.distributed as dist

        dist.barrier(group=_State.control)


def _all_reduce(values: list[int], op: str) -> list[int]:
    if _State.control is None:
        return list(values)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.int64)
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op), group=_State.control)
    return tensor.tolist()


def all_max(values: list[int]) -> list[int]:
    """Element-wise maximum over the ranks (any rank's flag, the agreed signal number)."""
    return _all_reduce(values, "MAX")


def all_sum(values: list[int]) -> list[int]:
    return _all_reduce(values, "SUM")


def all_gather(value: T) -> list[T]:
    """Every rank's `value`, in rank order."""
    if _State.control is None:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value, group=_State.control)
    return out


def gather(value: T) -> list[T] | None:
    """Every rank's `value` on the main rank, in rank order; None on the other ranks."""
    if _State.control is None:
        return [value]
    import torch.distributed as dist

    out: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(value, out, dst=0, group=_State.control)
    return out


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn` runs on the main rank alone; every rank returns its result, or raises its error (so that a UserError
    or a stop signal on the main rank stops every rank the same way, instead of leaving them waiting)."""
    if _State.control is None:
        return fn(*args, **kwargs)
    if is_main():
        try:
            value = fn(*args, **kwargs)
        except BaseException as err:
            broadcast(("error", _portable(err)))
            raise
        broadcast(("ok", value))
        return value
    status, value = broadcast(None)
    if status == "error":
        raise value
    return value


def _portable(err: BaseException) -> BaseException:
    """`err` as the other ranks can receive it: itself if it survives pickling, else a RuntimeError with its line."""
    from . import interrupt

    if isinstance(err, interrupt.Interrupted):
        return interrupt.Interrupted(err.signum, "on the main rank")
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except (pickle.PickleError, TypeError, AttributeError, ValueError):
        return RuntimeError(f"on the main rank: {err.__class__.__name__}: {err}")


def check_interrupt(where: str) -> None:
    """interrupt.check agreed by every rank: a stop signal that reached any rank stops all of them at this point
    (a signal reaches the ranks at different moments, and a rank that went on alone would wait forever)."""
    from . import interrupt

    signum = all_max([interrupt.requested() or 0])[0]
    if signum:
        raise interrupt.Interrupted(signum, where)
