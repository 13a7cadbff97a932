"""Evaluation time of the native engine against lm-evaluation-harness's hf engine, like for like.

The same model, adapter, rows, batch and max_new_tokens; only `eval.engine` differs. Each round evaluates with
both engines in alternating order (ABBA), so a machine that gets busier or quieter during the run weighs on both.
Prints seconds per round and the hf/native ratio (median and range); `--check` also asserts equal metrics.

    python benchmarks/eval_engines.py                    # the miniature world (the README's default run)
    python benchmarks/eval_engines.py --adapter outputs/<run>/adapter --rounds 3 -- eval.limit=100
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from d2lora_exp import adapters, modeling
from d2lora_exp.config import config_dir
from d2lora_exp.phases import evaluate
from d2lora_exp.phases.prepare import prepare


def _plan(overrides: list[str], engine: str, out: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["data_size=0", "wandb.mode=disabled", *overrides,
                                                       f"eval.engine={engine}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return prepare(cfg, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", type=Path, help="a saved adapter to evaluate (default: the base model)")
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds (each evaluates twice per engine)")
    parser.add_argument("--check", action="store_true", help="fail unless both engines give identical metrics")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. eval.limit=100 'eval.evaluators=[task]'")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="eval_engines_"))
    plans = {engine: _plan(args.overrides, engine, out / engine) for engine in ("native", "hf")}
    first = plans["native"]
    model = modeling.load_model(first.model_source, first.cfg.model, first.device, first.dtype)
    if args.adapter is not None:
        model = adapters.load_frozen(model, args.adapter)
    seconds: dict[str, list[float]] = {"native": [], "hf": []}
    metrics: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for engine in ("native", "hf", "hf", "native"):
            target = out / f"{engine}-{round_}-{len(seconds[engine])}"
            target.mkdir(parents=True)
            start = time.perf_counter()
            evaluate._evaluate(plans[engine], model, args.adapter, target)
            seconds[engine].append(time.perf_counter() - start)
            metrics[engine] = json.loads((target / evaluate.METRICS).read_text())
    ratios = [h / n for h, n in zip(seconds["hf"], seconds["native"])]
    print(f"evaluators {[e.name for e in first.evaluators]}, limit {first.cfg.eval.limit}, "
          f"batch {first.cfg.eval.batch_size}, max_new_tokens {first.cfg.eval.max_new_tokens}, torch threads "
          f"{__import__('torch').get_num_threads()}")
    for engine, values in seconds.items():
        print(f"{engine:>6}: " + " ".join(f"{v:.2f}" for v in values) + f" s  (median {statistics.median(values):.2f})")
    print(f"hf / native: median {statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}")
    # Equal up to summation order (the harness averages 0-1 scores, the native code percentages).
    same = metrics["native"].keys() == metrics["hf"].keys() and all(
        math.isclose(v, metrics["hf"][k], rel_tol=1e-12, abs_tol=1e-12) for k, v in metrics["native"].items())
    print(f"same metrics (to 1e-12): {same}")
    if args.check and not same:
        raise SystemExit(f"metrics differ:\n native {metrics['native']}\n hf     {metrics['hf']}")


if __name__ == "__main__":
    main()
