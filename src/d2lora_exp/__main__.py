"""`python -m d2lora_exp [group=option ...] [key=value ...]`: one Hydra entry point for every experiment."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import hydra
from omegaconf import DictConfig

from .config import config_dir
from .errors import UserError
from .sweep_callback import JobFailure

log = logging.getLogger("d2lora_exp")


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def unknown_group_option(argv: list[str], conf: Path) -> str | None:
    """The one-line error for `group=option` naming no file in conf/<group>/, else None.

    Hydra would say it in a dozen lines with exit code 1; this keeps its list of valid choices in one line.
    Groups of Hydra itself (`hydra/...`) and sweeps (`method=sft,dpo`, `choice(...)`) are checked per value."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~")
        if group.startswith("hydra") or not (conf / group).is_dir() or "(" in value:
            continue
        choices = sorted(p.stem for p in (conf / group).glob("*.yaml"))
        wrong = [v for v in value.split(",") if v and v != "null" and v not in choices]
        if wrong:
            return f"{group}={wrong[0]}: no such option in conf/{group}/; choose one of {', '.join(choices)}."
    return None


def _attempt_hydra_files() -> Path | None:
    """The folder where Hydra wrote this attempt's config files (`hydra.output_subdir`, one per process)."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    return Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir if hydra_cfg.output_subdir else None


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | JobFailure | None:
    """One job. Under `hydra/launcher=slurm` with several tasks per job, submitit starts every task here (not in
    `main`): they join their process group now and leave it when the job ends."""
    from . import dist

    joined = dist.init()
    result = _job(cfg)
    if joined:
        dist.finish()
    return result


def _job(cfg: DictConfig) -> float | JobFailure | None:
    from . import dist, gpu_slots, interrupt, recipe
    from .phases.record import error_line

    attempt = _attempt_hydra_files()
    if not dist.is_main():  # the main rank logs the run; the others' warnings and errors still show
        logging.getLogger().setLevel(logging.WARNING)
    try:
        if cfg.gpu_slots and _in_multirun() and not dist.active():  # a launcher's ranks have their GPUs already
            gpu = gpu_slots.claim(Path(cfg.paths.cache_dir) / "gpu_slots")
            if gpu is not None:
                logging.getLogger(__name__).info("job %s runs on GPU %s", cfg.run_name, gpu)
        result = recipe.run(cfg, attempt)
    except interrupt.Interrupted as err:  # a BaseException: it stops a local sweep too, as the signal asked
        # Every rank stopped at the same agreed point; none leaves before the main rank has recorded the interruption
        # (a launcher stops the other ranks as soon as one exits).
        dist.barrier()
        if not dist.is_main():
            sys.exit(128 + err.signum)
        again = "the same sweep" if _in_multirun() else f"the same command with hydra.run.dir={cfg.paths.output_dir}"
        print(f"d2lora_exp: interrupted: {err}; rerun {again} to resume from its checkpoint", file=sys.stderr)
        interrupt.hand_over(err)
    except Exception as err:
        if isinstance(err, UserError) and dist.is_main():  # every rank raised it: said once
            print(f"d2lora_exp: error: {err}", file=sys.stderr)
        if not _in_multirun():
            if isinstance(err, UserError):
                sys.exit(2)
            raise
        if dist.active() and not isinstance(err, UserError):
            # An error of one rank (a UserError is every rank's: the same checks of the same config) must end the
            # launch: carrying on to the sweep's next job (Hydra re-raises only after the batch) would leave the other
            # ranks waiting in a collective forever. The run is recorded as failed already; the launcher ends the rest.
            log.exception("%s failed on rank %d: ending this process so the launcher stops every rank",
                          cfg.run_name, dist.rank())
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        if not isinstance(err, UserError):
            log.exception("%s failed", cfg.run_name)
        # Returned, not raised: Hydra would stop the sweep at the end of this batch, before the report. The
        # sweep callback lists the failures in the report and ends the sweep with exit code 1.
        return JobFailure(str(cfg.run_name), str(cfg.paths.output_dir), error_line(err))
    finally:
        if attempt is not None and attempt.is_dir():  # not installed as the run's .hydra/: this attempt did not run
            shutil.rmtree(attempt)
    if not dist.is_main():
        return result.get("score")
    metrics = result.get("metrics", {})
    summary = ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
    skipped = " (already complete, skipped)" if result.get("skipped") else ""
    print(f"[d2lora_exp] {cfg.run_name}{skipped}: {summary or 'no evaluation'} "
          f"(total {result['timings']['total']:.0f}s) -> {cfg.paths.output_dir}")
    return result.get("score")


def main() -> None:
    """Check the group options on the command line, then hand over to Hydra.

    A W&B service address inherited from a parent process that used W&B (a launcher, a notebook) is dropped: this
    process starts its own. In the parent's service a killed job's run stays open, so the job resumed under the same
    run id would be refused ("run ID is in use"), and the service dies with its parent."""
    os.environ.pop("WANDB_SERVICE", None)
    message = unknown_group_option(sys.argv[1:], config_dir())
    if message:
        print(f"d2lora_exp: error: {message}", file=sys.stderr)
        sys.exit(2)
    from . import dist

    dist.init()  # under torchrun / accelerate launch: before Hydra names the run directory (rank 0's time and pid)
    _hydra_main()
    dist.finish()


if __name__ == "__main__":
    main()
