"""What every evaluator is: data loaded and checked before the model exists, then one scoring pass.

The recipe asks the config for a list of evaluators (`eval.evaluators`) and runs each the same way, so
adding an evaluation is adding a class, not an `if` in the run. An evaluator also says what determines
its numbers (`material`), so an evaluation can be content-addressed and computed once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from datasets import Dataset
from omegaconf import OmegaConf

from ..errors import UserError
from ..files import write_jsonl


class Evaluator(ABC):
    name: str  # registry name; predictions go to predictions_<name>.jsonl
    computed = 0  # rows this rank computed in the latest evaluation (its share under several ranks, ranks.py)

    @staticmethod
    def check(cfg: Any) -> None:
        """Check the evaluator's settings in `task.eval` (a task's own evaluator only). Called whether or not the run
        lists the evaluator, so a bad value is refused before the model loads even when it would go unused."""
        return None

    @abstractmethod
    def material(self) -> dict[str, Any]:
        """Everything besides the weights that determines the numbers: data content, prompts, settings."""

    def evaluate(self, model, tokenizer, out_dir: Path) -> dict[str, float] | None:
        """Score the model with this project's own code; writes per-example predictions under out_dir. Only for
        what the harness cannot express (`harness_spec` is None): everything else runs in the harness. Every rank
        calls it and computes its share of the rows; the main rank scores and writes, the others return None."""
        raise NotImplementedError(f"{self.name} is evaluated through lm-evaluation-harness (evaluate_with)")

    def harness_spec(self):
        """The shipped lm-evaluation-harness task that computes this evaluation (`harness.Spec`), or None when the
        harness cannot express it (then `evaluate` computes it)."""
        return None

    def evaluate_with(self, engine, out_dir: Path) -> dict[str, float] | None:
        """Score the model through the harness engine (`eval.engine=hf|vllm`) with the shipped task (the main rank;
        the others compute their share of the rows and return None)."""
        from .. import dist
        from . import harness
        from .ranks import docs_computed

        spec = self.harness_spec()
        tasks = harness.build_tasks([harness.shipped_config(spec)])
        results, samples = harness.evaluate(tasks, engine, apply_chat_template=True)
        self.computed = docs_computed(engine.lm(), len({s["doc_id"] for s in samples[spec.task]}))
        if not dist.is_main():
            return None
        values = harness.metric_values(results[spec.task])
        rows = harness.prediction_rows(samples[spec.task], spec.keep, list(spec.metrics))
        if spec.annotate is not None:
            rows = [{**row, **spec.annotate(row)} for row in rows]
        self.write_predictions(out_dir, rows)
        return {**{ours: 100.0 * values[theirs] for theirs, ours in spec.metrics.items()}, spec.n_metric: len(rows)}

    def predictions_path(self, out_dir: Path) -> Path:
        return out_dir / f"predictions_{self.name}.jsonl"

    def write_predictions(self, out_dir: Path, rows: list[dict[str, Any]]) -> None:
        write_jsonl(self.predictions_path(out_dir), rows)


def data_source(cfg: Any, key: str, evaluator: str, needs: str) -> dict[str, Any]:
    """The evaluator's own data source, `eval.<key>`, resolved; or one line saying what to set."""
    source = cfg.eval.get(key)
    if source is None:
        raise UserError(f"eval.evaluators lists {evaluator}, which needs {needs}")
    return OmegaConf.to_container(source, resolve=True)


def limited(ds: Dataset, limit: int | None) -> Dataset:
    """The first `limit` rows (all when None): evaluations on a prefix stay comparable across runs."""
    return ds if limit is None or limit >= len(ds) else ds.select(range(int(limit)))
