"""Evaluation: the evaluators a run lists in `eval.evaluators`, each loaded and checked before the model.

`task` stands for the task's own evaluator (GSM8K accuracy for math, ROUGE for titles); `arc_easy` is the
forgetting benchmark (paper Exp3); `chat` the held-out chat behaviour the warm-up trains.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..tasks import TASKS
from .arc import ArcEasy
from .base import Evaluator
from .chat import ChatBehaviour
from .gsm8k import GSM8K
from .harness import HarnessTasks
from .titles import TitlesRouge

TASK_OWN = {task.evaluator for task in TASKS.values()}  # score a task's own held-out set: only with that task
EVALUATORS: dict[str, type] = {"gsm8k": GSM8K, "titles_rouge": TitlesRouge, "arc_easy": ArcEasy, "chat": ChatBehaviour}


def prepare(cfg: Any, task) -> list[Evaluator]:
    """Build every listed evaluator (loading and checking its data) in the order listed, without duplicates."""
    EVALUATORS[task.evaluator].check(cfg)
    names = [task.evaluator if name == "task" else str(name) for name in cfg.eval.evaluators]
    unknown = [n for n in names if n not in EVALUATORS]
    if unknown:
        raise UserError(f"eval.evaluators: unknown {unknown}; choose from {['task', *sorted(EVALUATORS)]}.")
    wrong_task = [n for n in names if n in TASK_OWN and n != task.evaluator]
    if wrong_task:
        raise UserError(f"eval.evaluators: {wrong_task} score another task's held-out set; task={task.name} is scored "
                        f"by {task.evaluator!r} (write `task`).")
    if len(set(names)) != len(names):
        raise UserError(f"eval.evaluators={names} names an evaluator twice (`task` is {task.evaluator!r}).")
    evaluators = [EVALUATORS[name](cfg, task) for name in names]
    if cfg.eval.engine == "vllm":
        _require_vllm()
    return evaluators + ([HarnessTasks(cfg)] if cfg.eval.harness.tasks else [])


def _require_vllm() -> None:
    from importlib.util import find_spec

    if find_spec("vllm") is None:
        raise UserError("eval.engine=vllm needs vLLM on a CUDA machine: `pip install vllm` (or use eval.engine=hf).")


def engine_of(evaluator, engine: str) -> str:
    """What computes an evaluator's numbers: the harness engine (`eval.engine`: hf or vllm) for everything it can
    express, this project's own code (`native`) for the rest (chat behaviour)."""
    if isinstance(evaluator, HarnessTasks) or evaluator.harness_spec() is not None:
        return engine
    return "native"


__all__ = ["EVALUATORS", "Evaluator", "HarnessTasks", "engine_of", "prepare"]
