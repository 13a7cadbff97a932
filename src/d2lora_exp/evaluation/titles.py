"""Title generation scored by ROUGE-1/2/L on the pairs the titles task holds out, with a bootstrap interval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..fingerprint import content_config
from ..stats import bootstrap_ci
from .base import Evaluator, limited


class TitlesRouge(Evaluator):
    name = "titles_rouge"

    def __init__(self, cfg: Any, task) -> None:
        self.task = task
        self.rows = limited(task.eval_set(), cfg.eval.limit)
        self.eval_cfg = cfg.eval
        self.task_cfg = OmegaConf.to_container(cfg.task, resolve=True)

    def material(self) -> dict[str, Any]:
        held_out = {k: self.task_cfg.get(k) for k in ("train", "eval", "columns", "instruction")}
        return {"task": content_config(held_out), "n": len(self.rows), "max_new_tokens": int(self.eval_cfg.max_new_tokens)}

    def harness_spec(self):
        from .harness import Spec

        instruction = self.task_cfg["instruction"]
        return Spec("d2lora_titles", self.rows, overrides={
            "doc_to_text": lambda doc: instruction + doc["abstract"],
            "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": int(self.eval_cfg.max_new_tokens)}},
            metrics={"rouge1": "rouge1", "rouge2": "rouge2", "rougeL": "rougeL"}, keep=("abstract", "title"))

    def evaluate_with(self, engine, out_dir: Path) -> dict[str, float] | None:
        metrics = super().evaluate_with(engine, out_dir)
        if metrics is None:  # not the main rank
            return None
        rows = [json.loads(line) for line in self.predictions_path(out_dir).read_text().splitlines()]
        low, high = bootstrap_ci([100.0 * row["rougeL"] for row in rows])
        return {**metrics, "rougeL_ci95_low": low, "rougeL_ci95_high": high}
