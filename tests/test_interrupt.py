"""interrupt.py: a stop signal is only recorded when it arrives, acted on at a safe point, then handed back."""

from __future__ import annotations

import os
import signal

import pytest

from d2lora_exp import interrupt


@pytest.fixture(autouse=True)
def _clean():
    interrupt.reset()
    yield
    interrupt.reset()


def test_a_signal_is_recorded_and_raised_only_at_a_check():
    with interrupt.guard():
        os.kill(os.getpid(), signal.SIGUSR1)
        assert interrupt.requested() == signal.SIGUSR1  # the process is still running: nothing was cut short
        with pytest.raises(interrupt.Interrupted, match="SIGUSR1 received; stopped after the warm-up"):
            interrupt.check("after the warm-up")


def test_the_earlier_handlers_come_back_and_get_the_signal(monkeypatch):
    """Under submitit, its USR2 handler requeues the job: it must still run, after the run saved its state."""
    seen = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    try:
        with pytest.raises(interrupt.Interrupted) as caught, interrupt.guard():
            assert signal.getsignal(signal.SIGUSR2) is not previous
            os.kill(os.getpid(), signal.SIGUSR2)
            interrupt.check("in the adapt phase")
        assert seen == []  # our handler took it while the run was going
        assert signal.getsignal(signal.SIGUSR2) not in (interrupt._record,)
        with pytest.raises(SystemExit) as exited:
            interrupt.hand_over(caught.value)
        assert seen == [signal.SIGUSR2] and exited.value.code == 128 + signal.SIGUSR2
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_no_new_run_starts_in_a_process_asked_to_stop():
    """A local sweep runs its jobs in one process: after SIGTERM the next job must not start."""
    with pytest.raises(interrupt.Interrupted), interrupt.guard():
        os.kill(os.getpid(), signal.SIGTERM)
        interrupt.check("in the adapt phase")
    with pytest.raises(interrupt.Interrupted, match="before the run started"), interrupt.guard():
        pass


def test_an_error_after_a_stop_signal_is_an_interruption_not_a_failure(make_cfg, monkeypatch):
    """SLURM signals every process of the job: a data-loader worker or W&B's service may die of it first, and the
    error the run then sees must leave it resumable (status interrupted), not failed."""
    import json
    from pathlib import Path

    from d2lora_exp import recipe
    from d2lora_exp.phases import evaluate

    def dies(plan, model, adapter_dir):
        os.kill(os.getpid(), signal.SIGTERM)
        raise RuntimeError("DataLoader worker (pid 123) is killed by signal: Terminated")

    monkeypatch.setattr(evaluate, "run", dies)
    cfg = make_cfg()
    with pytest.raises(interrupt.Interrupted, match="SIGTERM received; stopped then RuntimeError: DataLoader worker"):
        recipe.run(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["status"] == "interrupted"
