"""Examples saved: known curves give known savings, with bounds instead of extrapolation, in the report."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from d2lora_exp import report
from d2lora_exp.savings import Needed, examples_needed


def test_the_first_crossing_is_interpolated_in_log_n_and_linearly_from_zero():
    curve = {0: 10.0, 100: 20.0, 1000: 40.0}
    assert examples_needed(curve, 30.0).n == pytest.approx(math.sqrt(100 * 1000))  # halfway in log(n)
    assert examples_needed(curve, 15.0).n == pytest.approx(50.0)  # between 0 and 100: linear in n
    assert examples_needed(curve, 5.0) == Needed(0.0)  # the initialisation already scores it
    assert examples_needed(curve, 40.0).n == pytest.approx(1000.0)
    assert examples_needed({0: 10.0, 100: 30.0, 300: 20.0, 1000: 40.0}, 25.0).n == pytest.approx(75.0)  # first crossing


def test_outside_the_measured_sizes_it_says_so_instead_of_extrapolating():
    below = examples_needed({100: 20.0, 1000: 40.0}, 15.0)
    assert (below.n, below.kind, below.text()) == (None, "below_smallest", "≤ 100 (below the smallest size)")
    beyond = examples_needed({0: 10.0, 100: 20.0, 1000: 40.0}, 50.0)
    assert (beyond.n, beyond.kind, beyond.text()) == (None, "not_reached", "not reached (> 1000)")


def _run(sweep, init, method, n, seed, acc, **extra):
    d = sweep / f"{init}-{method}-math-n{n}-s{seed}-{len(list(sweep.glob('*'))) if sweep.exists() else 0}"
    d.mkdir(parents=True)
    data = {"status": "complete", "task": "math", "init": init, "method": method, "data_size": n, "seed": seed,
            "metrics": {"accuracy": acc, "eval_n": 10}, **extra}
    (d / "metrics.json").write_text(json.dumps(data))


def test_report_reads_examples_saved_per_seed_with_an_interval_and_for_the_paper(tmp_path):
    sweep = tmp_path / "sweep"
    lora_1000 = [25.0, 30.0, 35.0]  # D2LoRA: 20 at 100, 40 at 1000 -> needs 10^(2 + (score - 20) / 20) per seed
    for seed, score in enumerate(lora_1000):
        _run(sweep, "lora", "sft", 100, seed, 10.0)
        _run(sweep, "lora", "sft", 1000, seed, score)
        _run(sweep, "d2lora", "sft", 100, seed, 20.0)
        _run(sweep, "d2lora", "sft", 1000, seed, 40.0)
        _run(sweep, "lora", "orpo", 1000, seed, 50.0 + seed)  # D2LoRA-ORPO never gets there
        _run(sweep, "d2lora", "orpo", 0, seed, 5.0)
        _run(sweep, "d2lora", "orpo", 1000, seed, 40.0)
    paper = {"math": {"accuracy": {"sft": {"lora": {1000: 30.0}, "d2lora": {0: 10.0, 100: 20.0, 1000: 40.0}}}}}
    report.write(sweep, paper=paper)
    md = (sweep / "report.md").read_text()
    section = md.split("## Examples saved: math accuracy\n")[1].split("\n## ")[0]
    needs = [10 ** (2 + (s - 20.0) / 20.0) for s in lora_1000]
    mean, half = statistics.fmean(needs), 4.303 * statistics.stdev(needs) / math.sqrt(3)
    on_means = math.sqrt(100 * 1000)  # LoRA's mean score, 30, is halfway up D2LoRA's mean curve in log(n)
    seeds = ", ".join(f"s{i}: {n:.0f}" for i, n in enumerate(needs))
    assert (f"| sft | d2lora vs lora | 1000 | 30.00 | {on_means:.0f} | {seeds} | {mean:.0f} ±{half:.0f} (3) | "
            f"{1000 - mean:.0f} ±{half:.0f} |") in section
    below = ", ".join(f"s{i}: ≤ 100 (below the smallest size)" for i in range(3))
    assert (f"| sft | d2lora vs lora | 100 | 10.00 | ≤ 100 (below the smallest size) | {below} | no interval: 0 of 3 "
            "seeds reached it within the curve | – |") in section
    assert "| orpo | d2lora vs lora | 1000 | 51.00 | not reached (> 1000) |" in section
    assert f"| sft | d2lora vs lora (paper) | 1000 | 30.00 | {on_means:.0f} | – | – | {1000 - on_means:.0f} |" in section


def test_examples_saved_work_at_the_paper_sizes_beside_the_published_rows(tmp_path):
    """The paper's grid (0, 1k, 2k, 5k, 10k) with the shipped published numbers in the same report."""
    sweep = tmp_path / "sweep"
    for seed in range(2):
        for n, lora, warmed in ((0, 5.0, 8.0), (1000, 20.0, 30.0), (2000, 30.0, 40.0), (5000, 40.0, 45.0),
                                (10000, 50.0, 52.0)):
            _run(sweep, "lora", "sft", n, seed, lora + seed)
            _run(sweep, "d2lora", "sft", n, seed, warmed + seed)
    report.write(sweep)  # conf/paper_results.yaml
    md = (sweep / "report.md").read_text()
    section = md.split("## Examples saved: math accuracy\n")[1].split("\n## ")[0]
    # LoRA at 2000 scores what D2LoRA scores at 1000, per seed: needs exactly 1000 with no spread.
    assert "| sft | d2lora vs lora | 2000 | 30.50 | 1000 | s0: 1000, s1: 1000 | 1000 ±0 (2) | 1000 ±0 |" in section
    # Table 3 (SFT): LoRA 75.82 at 1k lies between D2LoRA's 74.96 at 0 and 77.10 at 1k (linear from 0); LoRA 78.17 at
    # 2k between D2LoRA's 77.10 at 1k and 79.53 at 2k (log n).
    at_1k = (75.82 - 74.96) / (77.10 - 74.96) * 1000
    at_2k = 1000 * 2 ** ((78.17 - 77.10) / (79.53 - 77.10))
    assert f"| sft | d2lora vs lora (paper) | 1000 | 75.82 | {at_1k:.0f} | – | – | {1000 - at_1k:.0f} |" in section
    assert f"| sft | d2lora vs lora (paper) | 2000 | 78.17 | {at_2k:.0f} | – | – | {2000 - at_2k:.0f} |" in section
    assert "| sft | d2lora (paper) | 74.96 |" in md.split("## Examples")[0]  # the published rows still stand beside ours
