"""`python tests/stop_at_step.py <phase>:<step>:<KILL|TERM|USR1|USR2> [d2lora_exp overrides...]`

Runs the real entry point, and sends the signal to itself at the end of optimizer step <step> of the phase
(warmup or adapt), as a cluster would at any moment: KILL dies on the spot (the latest periodic checkpoint is all
that is left), TERM/USR1/USR2 are caught by the run; RAISE raises an error there instead (a bug, an OOM of one
process). Test code only: the product has no such hook.

Under torchrun every rank runs this; with STOP_RANK=<r> in the environment only rank r signals itself (a signal that
reaches one process of a job first).
"""

from __future__ import annotations

import os
import signal
import sys

from d2lora_exp import tracking
from d2lora_exp.__main__ import main

phase, step, name = sys.argv.pop(1).split(":")
original = tracking.PhaseLogger.on_step_end


def on_step_end(self, args, state, control, **kwargs):
    here = os.environ.get("STOP_RANK") in (None, os.environ.get("RANK", "0"))
    if self.phase == phase and state.global_step == int(step) and here:
        sys.stderr.flush()
        if name == "RAISE":
            raise RuntimeError(f"injected failure at {phase} step {step}")
        os.kill(os.getpid(), getattr(signal, f"SIG{name}"))
    return original(self, args, state, control, **kwargs)


tracking.PhaseLogger.on_step_end = on_step_end
main()
