"""Evaluation: every evaluator of the plan on the adapted model, content-addressed and computed once.

The numbers are a function of the weights evaluated (base model + adapter digest), of what each evaluator
reads (its `material`) and of the evaluation code, so the evaluation is cached under their hash like the
warm-up. Every run at data_size=0 of one initialisation (one per method curve) therefore shares one
evaluation, computed by whichever job gets there first; a crash after evaluation never evaluates twice.

Under several ranks all of them evaluate, each its share of every evaluator's rows (evaluation/ranks.py), while the
main rank holds the cache lock, decides for all whether the entry is reused, scores the gathered rows and writes.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from peft import PeftModel

from .. import adapters, dist, evaluation, modeling
from ..build_once import build_once, read_record
from ..evaluation import harness
from ..files import write_json_atomic
from ..fingerprint import file_sha256, library_versions, stable_hash
from .prepare import Plan

METRICS = "metrics.json"
FORMAT_VERSION = 1


def code_digest() -> str:
    """The evaluation code (prompts, generation, extraction, metrics): a change to it is a new evaluation."""
    package = Path(__file__).resolve().parents[1]
    sources = sorted((package / "evaluation").rglob("*.py")) + sorted((package / "evaluation").rglob("*.yaml"))
    return stable_hash({str(p.relative_to(package)): file_sha256(p) for p in [*sources, package / "chat.py"]})


def key_material(plan: Plan, model) -> dict[str, Any]:
    """Everything that determines the numbers. Without an adapter (data_size=0, no warm-up) the weights are the
    base model's whatever the init, so every init and seed shares that one evaluation."""
    cfg = plan.cfg
    adapter = ({"digest": adapters.live_digest(model), "init_base": plan.init_base}
               if isinstance(model, PeftModel) else None)
    return {"format": FORMAT_VERSION, "code": code_digest(),
            "model": modeling.identity(cfg.model, plan.model_source, plan.dtype_name), "adapter": adapter,
            "device": plan.device, "batch_size": int(cfg.eval.batch_size), "engines": engines(plan),
            "lm_eval": harness.harness_version(),
            "evaluators": {e.name: e.material() for e in plan.evaluators}, "versions": library_versions()}


def engines(plan: Plan) -> dict[str, str]:
    """Which engine computes each evaluator's numbers (metrics.json `evaluation.engines`)."""
    return {e.name: evaluation.engine_of(e, plan.cfg.eval.engine) for e in plan.evaluators}


def _engine(plan: Plan, model, name: str, adapter_dir: Path | None) -> harness.Engine:
    cfg = plan.cfg
    return harness.Engine(name, model, plan.tokenizer, int(cfg.eval.batch_size), int(cfg.eval.max_new_tokens),
                          plan.model_source, plan.dtype_name, adapter_dir,
                          OmegaConf.to_container(cfg.eval.vllm_args, resolve=True) if cfg.eval.vllm_args else {})


def _evaluate(plan: Plan, model, adapter_dir: Path | None, target: Path) -> dict[str, list[int]] | None:
    """This project's own evaluators first (vLLM needs the GPU memory the in-memory model holds); metrics are
    written in the order the evaluators are listed. Every rank runs this; on the main rank it returns the rows each
    rank computed, by evaluator. vLLM runs on the main rank alone (it shares GPUs its own way: `eval.vllm_args`)."""
    chosen = engines(plan)
    built: dict[str, harness.Engine] = {}
    by_evaluator: dict[str, dict[str, float] | None] = {}
    for evaluator in sorted(plan.evaluators, key=lambda e: chosen[e.name] != "native"):
        name = chosen[evaluator.name]
        if name == "native":
            by_evaluator[evaluator.name] = evaluator.evaluate(model, plan.tokenizer, target)
            continue
        engine = built.setdefault(name, _engine(plan, model, name, adapter_dir))
        if name == "vllm":
            by_evaluator[evaluator.name] = dist.on_main(evaluator.evaluate_with, engine, target)
        else:
            by_evaluator[evaluator.name] = evaluator.evaluate_with(engine, target)
    counts = dist.gather({e.name: e.computed for e in plan.evaluators})
    if counts is None:
        return None
    write_json_atomic(target / METRICS, {k: v for e in plan.evaluators for k, v in by_evaluator[e.name].items()})
    return {e.name: [c[e.name] for c in counts] for e in plan.evaluators}


def _place(src: Path, dst: Path) -> None:
    """The run directory gets its own copy of each predictions file (never a link: editing one run's file
    must not change another's, nor the cache entry)."""
    shutil.copyfile(src, dst)


def run(plan: Plan, model, adapter_dir: Path | None = None) -> tuple[dict[str, float], dict[str, Any] | None]:
    """(metrics, what metrics.json records about the evaluation: its key, whether it was reused, the engines, and
    under several ranks the rows each computed, `rows_by_rank`, when it was not reused). Every rank calls it.

    `adapter_dir`: the saved adapter of the model evaluated (the vllm engine loads it from there)."""
    if not plan.evaluators:
        return {}, None
    key = dist.on_main(lambda: stable_hash(key_material(plan, model)))
    target = Path(plan.cfg.paths.cache_dir) / "evaluations" / key
    built = build_once(target, key, functools.partial(_evaluate, plan, model, adapter_dir), together=True)
    return dist.on_main(_recorded, plan, key, built)


def _recorded(plan: Plan, key: str, built) -> tuple[dict[str, float], dict[str, Any]]:
    for evaluator in plan.evaluators:
        _place(evaluator.predictions_path(built.path), evaluator.predictions_path(plan.out_dir))
    evaluated = {"key": key, "reused": built.reused, "dir": str(built.path), "engines": engines(plan)}
    if dist.active() and not built.reused:
        evaluated["rows_by_rank"] = built.value
    return read_record(built.path, METRICS), evaluated
