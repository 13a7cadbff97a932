"""The report's cost section: a warm-up's FLOPs spread over the runs that reuse it, beside their adaptations."""

from __future__ import annotations

import json

from d2lora_exp import report


def _run(sweep, init, n, seed, adapt_flops, warmup=None):
    d = sweep / f"{init}-sft-math-n{n}-s{seed}"
    d.mkdir(parents=True)
    adapt = None if n == 0 else {"tokens": 1000 * n, "positions": 1100 * n, "flops": adapt_flops,
                                 "flops_with_padding": adapt_flops * 1.1, "seconds": n / 10}
    data = {"status": "complete", "task": "math", "init": init, "method": "sft", "data_size": n, "seed": seed,
            "metrics": {"accuracy": 10.0, "eval_n": 10}, "warmup": warmup and {"key": warmup["key"]},
            "cost": {"formula": "...", "warmup": warmup, "adapt": adapt, "eval": {"seconds": 1.0}}}
    (d / "metrics.json").write_text(json.dumps(data))


def test_the_warmup_is_amortised_over_every_run_that_reused_it(tmp_path):
    sweep = tmp_path / "sweep"
    warm = {"tokens": 50_000, "positions": 60_000, "flops": 1.2e12, "flops_with_padding": 1.5e12, "seconds": 44.0,
            "key": "abcdef0123456789"}
    _run(sweep, "d2lora", 0, 0, None, {**warm, "reused": False})
    _run(sweep, "d2lora", 100, 0, 2e10, {**warm, "reused": True})
    _run(sweep, "d2lora", 300, 0, 6e10, {**warm, "reused": True})
    _run(sweep, "lora", 100, 0, 2e10)
    old = sweep / "lora-sft-math-n300-s0"
    old.mkdir()
    (old / "metrics.json").write_text(json.dumps({"status": "complete", "task": "math", "init": "lora", "method": "sft",
                                                  "data_size": 300, "seed": 0, "metrics": {"accuracy": 1.0}}))
    report.write(sweep, paper={})
    cost = (sweep / "report.md").read_text().split("## Cost\n")[1]
    # 1.2e12 over 3 runs (n=0 included); the mean adaptation of the two that trained.
    assert "| math | d2lora | 0 | `abcdef01` | 50,000 | 1.2e+12 | 44 | 3 | 4e+11 | 4e+10 (2) |" in cost
    assert "1 of 5 runs record no cost" in cost
    assert "| math | sft | lora | 2e+10 (100.0k tok, 10 s) | – |" in cost
    assert "| math | sft | d2lora | 2e+10 (100.0k tok, 10 s) | 6e+10 (300.0k tok, 30 s) |" in cost
