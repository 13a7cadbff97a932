"""Tasks: where the training pool and the held-out set come from, how rows become TRL rows, how to score.

`task=<name>` in the config selects one class here.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from .base import Task
from .math import MathTask
from .titles import TitlesTask

TASKS: dict[str, type[Task]] = {"math": MathTask, "titles": TitlesTask}


def get_task(task_cfg: Any) -> Task:
    if task_cfg.name not in TASKS:
        raise UserError(f"unknown task {task_cfg.name!r}; choose one of {sorted(TASKS)}.")
    return TASKS[task_cfg.name](task_cfg)
