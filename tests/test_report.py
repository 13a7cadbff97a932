"""The local report: mean ± std over seeds in the paper's layout, CSV rows, PNG curves, CLI."""

from __future__ import annotations

import csv
import json
import statistics

from d2lora_exp import report


def _run(sweep, init, method, n, seed, acc, status="complete", reference=None):
    d = sweep / f"{init}-{method}-math-n{n}-s{seed}"
    d.mkdir(parents=True)
    data = {"status": status, "task": "math", "init": init, "method": method, "data_size": n, "seed": seed,
            "dpo_reference": reference, "metrics": {"accuracy": acc, "strict_accuracy": acc / 2, "eval_n": 10}}
    (d / "metrics.json").write_text(json.dumps(data))


def test_report_aggregates_seeds_in_the_paper_layout(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    accs = {("lora", 0): [10, 12, 14], ("lora", 100): [20, 22, 27], ("d2lora", 0): [11, 11, 11], ("d2lora", 100): [30, 31, 35]}
    for (init, n), values in accs.items():
        for seed, acc in enumerate(values):
            _run(sweep, init, "sft", n, seed, acc)
    _run(sweep, "lora", "sft", 200, 0, 99.0, status="failed")  # unfinished runs are not results
    _run(sweep, "lora", "dpo", 100, 0, 5.0, reference="base")
    _run(sweep, "pissa", "sft", 100, 0, 40.0)
    _run(sweep, "d2lora+pissa", "sft", 100, 0, 43.0)
    report.main([str(sweep)])
    md = (sweep / "report.md").read_text()
    mean, std = statistics.fmean([20, 22, 27]), statistics.stdev([20, 22, 27])
    half = 4.303 * std / 3**0.5  # t(0.975, df=2)
    assert f"| sft | lora | 12.00 ± 2.00 (3) [±4.97] | {mean:.2f} ± {std:.2f} (3) [±{half:.2f}] |" in md
    assert "| sft | d2lora | 11.00 ± 0.00 (3) [±0.00] | 32.00 ± 2.65 (3) [±6.57] |" in md
    # D2LoRA - LoRA paired by seed: [1, -1, -3] at n=0 and [10, 9, 8] at n=100.
    assert "| sft | d2lora − lora | -1.00 ±4.97 (3) | +9.00 ±2.48 (3) |" in md
    assert "| dpo[ref=base] | lora | – | 5.00 ± 0.00 (1) |" in md
    assert "200" not in md.split("## math: accuracy")[1].split("\n")[2]
    with open(sweep / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert "| sft | d2lora+pissa − pissa | – | +3.00 (1) |" in md  # composed inits pair with their plain twin
    assert len(rows) == (12 + 3) * 2  # accuracy and strict_accuracy per finished run
    assert (sweep / "curve_math_accuracy.png").stat().st_size > 5000
    assert "results; wrote" in capsys.readouterr().out


def test_data_size_zero_runs_are_the_first_point_of_their_method_curve(tmp_path):
    sweep = tmp_path / "sweep"
    for init, acc in (("lora", 5.0), ("d2lora", 9.0)):
        for method in ("sft", "orpo"):
            _run(sweep, init, method, 0, 0, acc)
            _run(sweep, init, method, 100, 0, acc + 10)
    rows = report.collect(sweep)
    zero = [r for r in rows if r["data_size"] == 0 and r["metric"] == "accuracy"]
    assert sorted((r["method"], r["init"], r["value"]) for r in zero) == [
        ("orpo", "d2lora", 9.0), ("orpo", "lora", 5.0), ("sft", "d2lora", 9.0), ("sft", "lora", 5.0)]
    md = report.markdown(report.aggregate(rows), "t")
    assert "| orpo | lora | 5.00 ± 0.00 (1) | 15.00 ± 0.00 (1) |" in md


def test_variant_splits_a_method_curve(tmp_path):
    sweep = tmp_path / "sweep"
    for lr, acc in (("lr0.001", 10.0), ("lr0.002", 20.0)):
        _run(sweep / lr, "lora", "sft", 100, 0, acc)
        data = json.loads((sweep / lr / "lora-sft-math-n100-s0" / "metrics.json").read_text())
        (sweep / lr / "lora-sft-math-n100-s0" / "metrics.json").write_text(json.dumps({**data, "variant": lr}))
    md = report.markdown(report.aggregate(report.collect(sweep)), "t")
    assert "| sft[lr0.001] | lora | 10.00 ± 0.00 (1) |" in md and "| sft[lr0.002] | lora | 20.00 ± 0.00 (1) |" in md


def test_published_numbers_appear_beside_ours(tmp_path):
    sweep = tmp_path / "sweep"
    _run(sweep, "lora", "sft", 100, 0, 20.0)
    _run(sweep, "d2lora", "sft", 100, 0, 22.0)
    paper = {"math": {"accuracy": {"sft": {"d2lora": {100: 61.5, 5000: 70.0}}}}}
    md = report.markdown(report.aggregate(report.collect(sweep)), "t", paper)
    assert "| sft | d2lora (paper) | 61.50 |" in md
    assert "lora (paper)" not in md.replace("d2lora (paper)", "")
    shipped = report.paper_results()  # conf/paper_results.yaml: Table 3 of the paper
    assert shipped["math"]["accuracy"]["sft"]["d2lora"][10000] == 80.67
    assert shipped["math"]["accuracy"]["dpo"]["lora"][0] == 74.53
    for by_init in shipped["math"]["accuracy"].values():
        assert set(by_init) == {"lora", "d2lora"} and all(set(v) == {0, 1000, 2000, 5000, 10000} for v in by_init.values())


def test_failed_runs_are_listed_with_their_error(tmp_path):
    sweep = tmp_path / "sweep"
    _run(sweep, "lora", "sft", 100, 0, 20.0)
    _run(sweep, "lora", "sft", 200, 0, 0.0, status="failed")
    failed = sweep / "lora-sft-math-n200-s0" / "metrics.json"
    failed.write_text(json.dumps({**json.loads(failed.read_text()), "error": "RuntimeError: CUDA out of memory"}))
    report.main([str(sweep)])
    md = (sweep / "report.md").read_text()
    assert "## Failed runs" in md
    assert f"- `lora-sft-math-n200-s0` (`{failed.parent}`): RuntimeError: CUDA out of memory" in md
    assert "| sft | lora | 20.00 ± 0.00 (1) |" in md  # what finished is still reported
