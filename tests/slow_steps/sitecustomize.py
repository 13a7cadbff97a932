"""Test code only, loaded by Python at start-up when this folder is on PYTHONPATH (the SLURM tests export it
to their jobs): each optimizer step of a training phase takes D2LORA_TEST_STEP_SECONDS longer, so that a
requeue or a time limit reliably lands in the middle of a phase instead of racing a sub-second tiny run."""

import os

if os.environ.get("D2LORA_TEST_STEP_SECONDS"):
    import time

    from d2lora_exp import tracking

    def _slow(self, args, state, control, **kwargs):
        time.sleep(float(os.environ["D2LORA_TEST_STEP_SECONDS"]))
        return control

    tracking.PhaseLogger.on_step_end = _slow
