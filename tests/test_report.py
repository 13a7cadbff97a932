"""The local report: mean ± std over seeds in the paper's layout, CSV rows, PNG curves, CLI."""

from __future__ import annotations

import csv
import json
import statistics

from d2lora_exp import report


def _run(sweep, init, method, n, seed, acc, status="complete", reference=None, task="math", metrics=None):
    d = sweep / f"{init}-{method}-{task}-n{n}-s{seed}"
    d.mkdir(parents=True)
    data = {"status": status, "task": task, "init": init, "method": method, "data_size": n, "seed": seed,
            "dpo_reference": reference, "config_hash": f"hash-{init}-{n}",
            "metrics": metrics or {"accuracy": acc, "strict_accuracy": acc / 2, "eval_n": 10}}
    (d / "metrics.json").write_text(json.dumps(data))


def _table(md: str, heading: str) -> tuple[list[str], dict[str, list[str]]]:
    """The column headers and the rows (by "method | init" label) of the table under `## heading`."""
    lines = md.split(f"## {heading}\n")[1].split("\n## ")[0].splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
    header, rows = cells[0], cells[1:]
    return header[2:], {f"{r[0]} | {r[1]}": r[2:] for r in rows}


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
    assert "| dpo[ref=base] | lora | – | 5.00 (1) |" in md
    assert "200" not in _table(md, "math: accuracy")[0]  # the failed run's size has no column
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
    assert "| orpo | lora | 5.00 (1) | 15.00 (1) |" in md


def test_variant_splits_a_method_curve(tmp_path):
    sweep = tmp_path / "sweep"
    for lr, acc in (("lr0.001", 10.0), ("lr0.002", 20.0)):
        _run(sweep / lr, "lora", "sft", 100, 0, acc)
        data = json.loads((sweep / lr / "lora-sft-math-n100-s0" / "metrics.json").read_text())
        (sweep / lr / "lora-sft-math-n100-s0" / "metrics.json").write_text(json.dumps({**data, "variant": lr}))
    md = report.markdown(report.aggregate(report.collect(sweep)), "t")
    assert "| sft[lr0.001] | lora | 10.00 (1) |" in md and "| sft[lr0.002] | lora | 20.00 (1) |" in md


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
    assert "| sft | lora | – | 20.00 (1) |" in md  # what finished is still reported (0: the paper's column)


def test_a_single_seed_cell_shows_its_value_without_a_zero_spread(tmp_path):
    sweep = tmp_path / "sweep"
    _run(sweep, "lora", "sft", 100, 0, 20.0)
    _run(sweep, "lora", "sft", 200, 0, 30.0)
    _run(sweep, "lora", "sft", 200, 1, 34.0)
    md = report.markdown(report.aggregate(report.collect(sweep)), "t", {})
    _, rows = _table(md, "math: accuracy")
    assert rows["sft | lora"] == ["20.00 (1)", "32.00 ± 2.83 (2) [±25.41]"]
    assert "± 0.00" not in md


def test_results_csv_says_how_many_examples_scored_each_metric_and_which_config(tmp_path):
    sweep = tmp_path / "sweep"
    _run(sweep, "lora", "sft", 100, 0, 20.0, metrics={"accuracy": 20.0, "strict_accuracy": 10.0, "accuracy_math_verify": 19.0,
                                                      "eval_n": 1319, "arc_acc": 60.0, "arc_acc_norm": 61.0,
                                                      "arc_acc_bytes": 62.0, "arc_n": 2376})
    report.write(sweep, paper={})
    with open(sweep / "results.csv") as f:
        rows = {r["metric"]: r for r in csv.DictReader(f)}
    assert {m: r["eval_n"] for m, r in rows.items()} == {"accuracy": "1319", "strict_accuracy": "1319",
                                                          "accuracy_math_verify": "1319", "arc_acc": "2376",
                                                          "arc_acc_norm": "2376", "arc_acc_bytes": "2376"}
    md = (sweep / "report.md").read_text()
    assert "## math: accuracy_math_verify" in md and "## math: arc_acc_bytes" in md
    assert {r["config_hash"] for r in rows.values()} == {"hash-lora-100"}


def test_shipped_paper_numbers_sit_in_their_cells(tmp_path):
    """Table 3 at the paper's sizes even where we ran others; Table 1 (ROUGE variant unstated) beside each ROUGE."""
    sweep = tmp_path / "sweep"
    for init in ("lora", "d2lora"):
        _run(sweep, init, "sft", 0, 0, 50.0)
        _run(sweep / "ref-base", init, "dpo", 1000, 0, 60.0, reference="base")  # the paper preset's DPO
        rouge = {"rouge1": 30.0, "rouge2": 12.0, "rougeL": 28.0, "eval_n": 100}
        _run(sweep, init, "sft", 0, 0, 0.0, task="titles", metrics=rouge)
        _run(sweep, init, "sft", 6962, 0, 0.0, task="titles", metrics=rouge)  # data_size=all: the pool's size
    md = report.markdown(report.aggregate(report.collect(sweep)), "t", report.paper_results())
    sizes, rows = _table(md, "math: accuracy")
    assert sizes == ["0", "1000", "2000", "5000", "10000"]
    assert rows["sft | d2lora (paper)"][sizes.index("10000")] == "80.67"
    assert rows["sft | lora (paper)"][sizes.index("0")] == "74.53"
    assert rows["sft | d2lora"] == ["50.00 (1)", "–", "–", "–", "–"]
    assert rows["dpo[ref=base] | d2lora (paper)"][sizes.index("1000")] == "80.82"  # Table 3's DPO (TRL of its time)
    assert "†" not in md.split("## titles")[0]  # Table 3 names its metric
    for metric in ("rougeL", "rouge1", "rouge2"):
        sizes, rows = _table(md, f"titles: {metric}")
        assert sizes == ["0", "1000", "2000", "5000", "6962", "7000"]
        assert rows["sft | d2lora (paper)†"][sizes.index("7000")] == "31.66"
        assert rows["sft | lora (paper)†"][sizes.index("0")] == "21.62"
        assert rows["sft | d2lora (paper)†"][sizes.index("6962")] == "–"
        section = md.split(f"## titles: {metric}")[1].split("\n## ")[0]
        assert "† ROUGE variant not stated in the paper (`rouge_unstated`)" in section


def _with_provenance(sweep, name, cpu="AMD EPYC", torch_version="2.13.0+cpu", commit="c" * 40):
    path = next(sweep.glob(f"{name}/metrics.json"))
    data = json.loads(path.read_text())
    data["provenance"] = {"machine": {"cpu": cpu, "cpu_count": 2, "gpus": []},
                          "libraries": {"python": "3.11.7", "torch": torch_version, "trl": "1.16.0"},
                          "code": {"commit": commit, "dirty": False}}
    path.write_text(json.dumps(data))


def test_a_table_whose_runs_differ_in_provenance_warns_and_one_whose_runs_agree_does_not(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in range(3):
        _run(sweep, "lora", "sft", 100, seed, 20.0 + seed)
        _with_provenance(sweep, f"lora-sft-math-n100-s{seed}")
    _run(sweep, "lora", "sft", 100, 0, 5.0, task="titles", metrics={"rougeL": 5.0, "rouge1": 6.0, "rouge2": 1.0, "eval_n": 4})
    _with_provenance(sweep, "lora-sft-titles-n100-s0")
    report.write(sweep, paper={})
    assert "Warning" not in (sweep / "report.md").read_text()  # same machine, libraries and commit: nothing said

    _with_provenance(sweep, "lora-sft-math-n100-s2", cpu="Intel Xeon", torch_version="2.11.0+cu128")
    report.write(sweep, paper={})
    md = (sweep / "report.md").read_text()
    line = ("**Warning (provenance):** machine `AMD EPYC x2` (2 runs), `Intel Xeon x2` (1 run); "
            "torch `2.13.0+cpu` (2 runs), `2.11.0+cu128` (1 run).")
    assert md.split("## math: accuracy\n\n")[1].startswith(line + "\n\n| method |")  # under its table's heading
    assert md.count(line) == 2  # accuracy and strict_accuracy: the same runs
    assert "Warning" not in md.split("## titles: rougeL")[1].split("## ")[0]  # the titles table's one run agrees


def _warmed(sweep, n, seed, acc, size, lr, init="d2lora"):
    label = "all" if size is None else size
    d = sweep / f"{init}-sft-math-n{n}-s{seed}-wu{label}-lr{lr}"
    d.mkdir(parents=True)
    warmup = {"data": {"path": "w.jsonl", "split": "train"}, "size": size, "learning_rate": lr, "num_train_epochs": 1}
    data = {"status": "complete", "task": "math", "init": init, "method": "sft", "data_size": n, "seed": seed,
            "metrics": {"accuracy": acc, "eval_n": 10}, "warmup": {"key": f"k{size}{lr}{seed}"},
            "config": {"warmup": warmup}}
    (d / "metrics.json").write_text(json.dumps(data))


def test_each_warmup_setting_gets_rows_of_its_own_paired_with_lora(tmp_path):
    """The warm-up ablation: D2LoRA runs whose warm-ups differ in size and rate are labelled by what differs, ordered
    by size (the whole pool last) then rate, and each is paired with LoRA by seed."""
    sweep = tmp_path / "sweep"
    for seed in range(2):
        _run(sweep, "lora", "sft", 100, seed, 10.0 + seed)
        for i, (size, lr) in enumerate([(1000, 0.002), (250, 0.002), (None, 0.002), (250, 0.001)]):
            _warmed(sweep, 100, seed, 20.0 + i + seed, size, lr)
    report.write(sweep, paper={})
    md = (sweep / "report.md").read_text()
    _, rows = _table(md, "math: accuracy")
    assert list(rows)[1:5] == ["sft | d2lora[wu250,lr0.001]", "sft | d2lora[wu250,lr0.002]", "sft | d2lora[wu1000,lr0.002]",
                              "sft | d2lora[wuall,lr0.002]"]
    assert rows["sft | d2lora[wuall,lr0.002]"] == ["22.50 ± 0.71 (2) [±6.35]"]
    assert "| sft | d2lora[wu1000,lr0.002] − lora | +10.00 ±0.00 (2) |" in md
    assert "| sft | d2lora[wu250,lr0.001] vs lora | 100 | 10.50 |" in md  # and examples saved per warm-up
    # One warm-up setting: the plain name, as before.
    single = tmp_path / "single"
    _run(single, "lora", "sft", 100, 0, 10.0)
    _warmed(single, 100, 0, 20.0, 250, 0.002)
    report.write(single, paper={})
    assert "| sft | d2lora − lora | +10.00 (1) |" in (single / "report.md").read_text()


def test_published_d2lora_row_stands_once_beside_the_warmup_ablation_rows(tmp_path):
    """The ablation's `d2lora[wu...]` rows are the paper's d2lora: its published row is shown, once per method."""
    sweep = tmp_path / "sweep"
    _run(sweep, "lora", "sft", 100, 0, 10.0)
    for size in (250, 1000):
        _warmed(sweep, 100, 0, 20.0, size, 0.002)
    paper = {"math": {"accuracy": {"sft": {"d2lora": {100: 61.5}, "lora": {100: 60.0}}}}}
    md = report.markdown(report.aggregate(report.collect(sweep)), "t", paper)
    table = md.split("## math: accuracy\n")[1].split("\n## ")[0]
    assert table.count("| sft | d2lora (paper) | 61.50 |") == 1 and table.count("| sft | lora (paper) | 60.00 |") == 1
