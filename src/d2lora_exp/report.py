"""Local report of a sweep, no W&B account needed: `python -m d2lora_exp.report <sweep dir>`.

Reads every finished run's metrics.json under the directory and writes, next to them,
`results.csv` (one row per run), `report.md` (the paper's layout: rows method x init, columns data
sizes, mean ± std over seeds) and one PNG of learning curves per task metric, LoRA and D2LoRA as series.
Runs that failed are listed under the tables with their error line, so a partial sweep still reads as one.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import provenance, report_cost, savings
from .stats import mean_ci, paired_difference

# Metrics reported per task, the headline first; ARC-Easy appears where the forgetting eval ran.
# accuracy_math_verify: Math-Verify's verdict, where task.eval.checker lists math_verify.
TASK_METRICS = {"math": ["accuracy", "strict_accuracy", "accuracy_math_verify"], "titles": ["rougeL", "rouge1", "rouge2"]}
FORGETTING_METRICS = ["arc_acc_norm", "arc_acc", "arc_acc_bytes"]  # lm-evaluation-harness acc_norm, acc, acc_bytes
CHAT_METRICS = ["chat_stop", "chat_exact"]  # the warm-up's own behaviour, where the chat evaluator ran
INIT_ORDER = ["lora", "d2lora"] + [f"{w}{b}" for b in ("pissa", "olora", "eva", "corda") for w in ("", "d2lora+")]
FIELDS = ["task", "method", "init", "data_size", "seed", "dpo_reference", "metric", "value", "eval_n", "config_hash",
          "run_dir"]
# How many examples scored a metric: each evaluator records its own count next to its metrics in metrics.json.
COUNT_KEYS = {**{m: "eval_n" for ms in TASK_METRICS.values() for m in ms}, **{m: "arc_n" for m in FORGETTING_METRICS},
              **{m: "chat_n" for m in CHAT_METRICS}}
# Published metrics whose variant the paper does not state: shown beside each of our metrics it may be, marked.
UNSTATED_PAPER_METRICS = {"rouge_unstated": (("rougeL", "rouge1", "rouge2"), "ROUGE variant not stated in the paper")}
UNSTATED_MARK = "†"


def reported(task: str, metric: str) -> bool:
    """The task's metrics, forgetting, chat, and every lm-evaluation-harness metric (`harness/<task>/<metric>`)."""
    if metric.startswith("harness/"):
        return not metric.endswith("/n")
    return metric in TASK_METRICS.get(task, []) + FORGETTING_METRICS + CHAT_METRICS


def count_key(metric: str) -> str:
    return metric.rsplit("/", 1)[0] + "/n" if metric.startswith("harness/") else COUNT_KEYS[metric]


def finished_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    """The metrics.json of every finished run under the directory (moved-aside attempts excluded), each with its
    `run_dir` and the row label of its init (`init_labels`)."""
    runs = []
    for path in sorted(sweep_dir.rglob("metrics.json")):
        if any(part.startswith(".attempt-") for part in path.parts):
            continue
        data = json.loads(path.read_text())
        if data.get("status") == "complete":
            runs.append({**data, "run_dir": str(path.parent)})
    labels = init_labels(runs)
    return [{**run, "init_label": labels.get(run["run_dir"], run.get("init"))} for run in runs]


# Short names of warm-up settings in row labels; any other setting that varies is shown by its own name.
WARMUP_SHORT = {"size": "wu", "learning_rate": "lr", "num_train_epochs": "ep"}


def init_labels(runs: list[dict[str, Any]]) -> dict[str, str]:
    """run_dir -> row label, for warmed-up runs of a task whose warm-up settings differ (the warm-up ablation):
    `d2lora[wu250,lr0.001]` names the settings that differ (warm-up size, `all` for the whole pool, and learning
    rate), so each warm-up gets rows of its own, ordered by size then rate, and pairs with LoRA by seed. A sweep with
    one warm-up keeps the plain init names."""
    labels = {}
    for task in {r.get("task") for r in runs}:  # a metrics.json of an older layout may name no task
        warmed = [r for r in runs if r.get("task") == task and r.get("warmup") and (r.get("config") or {}).get("warmup")]
        settings = {r["run_dir"]: _flat(r["config"]["warmup"]) for r in warmed}
        short = list(WARMUP_SHORT)
        keys = sorted({k for s in settings.values() for k in s}, key=lambda k: (short.index(k) if k in short else len(short), k))
        varying = [k for k in keys if len({repr(s.get(k)) for s in settings.values()}) > 1]
        if not varying:
            continue
        for r in warmed:
            setting = settings[r["run_dir"]]
            parts = [f"{WARMUP_SHORT.get(k, k + '=')}{'all' if setting.get(k) is None else setting.get(k)}"
                     for k in varying]
            labels[r["run_dir"]] = f"{r['init']}[{','.join(parts)}]"
    return labels


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def collect(sweep_dir: Path, runs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per (finished run, reported metric); a data_size=0 run is its method's first curve point.

    `eval_n` (examples scored for that metric) and `config_hash` say which results may be compared: runs of
    one cell scored on different numbers of examples, or of different configs, show up in the CSV."""
    rows = []
    for data in finished_runs(sweep_dir) if runs is None else runs:
        metrics = data.get("metrics") or {}
        for metric, value in metrics.items():
            if reported(data["task"], metric):
                rows.append({"task": data["task"], "method": curve_name(data), "init": data["init_label"],
                             "data_size": int(data["data_size"]), "seed": int(data["seed"]),
                             "dpo_reference": data.get("dpo_reference"), "metric": metric, "value": float(value),
                             "eval_n": metrics.get(count_key(metric)), "config_hash": data.get("config_hash"),
                             "run_dir": data["run_dir"], "provenance": provenance.labels(data.get("provenance"))})
    return rows


def provenance_warnings(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(task, metric) -> one line naming what differs among the runs of that table (machine, library versions,
    commit) and how many runs each; tables whose runs agree are absent."""
    runs: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for r in rows:
        runs[(r["task"], r["metric"])][r["run_dir"]] = r.get("provenance")
    found = {table: provenance.differences(list(by_dir.values())) for table, by_dir in runs.items()}
    return {table: line for table, line in found.items() if line}


def failed_runs(sweep_dir: Path) -> list[dict[str, str]]:
    """Runs whose metrics.json says failed (run_name, run_dir, error), for a report written outside a sweep."""
    failed = []
    for path in sorted(sweep_dir.rglob("metrics.json")):
        if any(part.startswith(".attempt-") for part in path.parts):
            continue
        data = json.loads(path.read_text())
        if data.get("status") == "failed":
            failed.append({"run_name": data.get("run_name", path.parent.name), "run_dir": str(path.parent),
                           "error": data.get("error", "")})
    return failed


def failures_markdown(failed: Sequence[dict[str, str]]) -> str:
    """The section listing failed runs: absent from the tables above, and why."""
    lines = ["## Failed runs", "", f"{len(failed)} run(s) failed; they are not in the tables above.", ""]
    lines += [f"- `{f['run_name']}` (`{f['run_dir']}`): {f['error']}" for f in failed]
    return "\n".join(lines) + "\n"


def curve_name(run: dict[str, Any]) -> str:
    """The method as a curve: DPO against the base model is its own curve, and so is each `variant`."""
    method = "dpo[ref=base]" if run.get("dpo_reference") == "base" else run["method"]
    return f"{method}[{run['variant']}]" if run.get("variant") else method


def aggregate(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """(task, metric, method, init, data_size) -> mean, std, 95% CI half-width, n and values by seed."""
    groups: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in rows:
        groups[(r["task"], r["metric"], r["method"], r["init"], r["data_size"])][r["seed"]] = r["value"]
    out = {}
    for k, by_seed in groups.items():
        v = list(by_seed.values())
        mean, half = mean_ci(v)
        out[k] = {"mean": mean, "std": statistics.stdev(v) if len(v) > 1 else 0.0, "ci95": half, "n": len(v),
                  "by_seed": by_seed}
    return out


def _fmt_ci(half: float) -> str:
    return "" if math.isnan(half) else f" ±{half:.2f}"


def _fmt_cell(cell: dict[str, Any]) -> str:
    """`mean ± std (seeds) [±half-width]`; one seed has no spread to show, so it reads `mean (1)`, not `± 0.00`."""
    if cell["n"] == 1:
        return f"{cell['mean']:.2f} (1)"
    return f"{cell['mean']:.2f} ± {cell['std']:.2f} ({cell['n']}) [{_fmt_ci(cell['ci95']).strip()}]"


def _order(values, preferred: list[str]) -> list:
    return sorted(set(values), key=lambda v: (preferred.index(v) if v in preferred else len(preferred), v))


def order_inits(inits) -> list[str]:
    """INIT_ORDER, each warm-up setting (`d2lora[wu250,lr0.001]`) after its plain init, by its values as numbers
    (`all` last)."""
    def key(init: str) -> tuple:
        base, _, setting = init.partition("[")
        values = [re.sub(r"^[a-z_.]+=?", "", part) for part in setting.rstrip("]").split(",")] if setting else []
        return (INIT_ORDER.index(base) if base in INIT_ORDER else len(INIT_ORDER), base, [_as_number(v) for v in values])

    return sorted(set(inits), key=key)


def _as_number(value: str) -> tuple[int, float, str]:
    """Sorts numbers by value, then `all` (the whole pool), then anything else by name."""
    if value == "all":
        return (1, math.inf, value)
    try:
        return (0, float(value), value)
    except ValueError:
        return (2, 0.0, value)


def warmed_twins(plain: str, inits) -> list[str]:
    """The warmed-up inits that pair with `plain` by seed: `d2lora` (or `d2lora+<plain>`) under each warm-up."""
    twin = "d2lora" if plain == "lora" else f"d2lora+{plain}"
    return order_inits(i for i in inits if i.partition("[")[0] == twin)


def paper_results(path: Path | None = None) -> dict:
    """Published numbers: task -> metric -> method -> init -> {data_size: value} (conf/paper_results.yaml)."""
    from omegaconf import OmegaConf

    from .config import config_dir

    path = path or config_dir() / "paper_results.yaml"  # shipped with the configs: missing = a broken install
    return OmegaConf.to_container(OmegaConf.load(path))


def published(paper: dict | None, task: str, metric: str) -> tuple[dict[str, dict[str, dict[int, float]]], str | None]:
    """The paper's numbers for one of our tables: method -> init -> {data_size: value}, and the caveat its rows
    carry (None when the paper names this very metric). Table 1 (titles) says "ROUGE" without the variant, so it
    is stored as `rouge_unstated` and shown beside each ROUGE we report, never silently taken for ROUGE-L."""
    by_metric = (paper or {}).get(task) or {}
    if metric in by_metric:
        found, note = by_metric[metric], None
    else:
        unstated = [(m, ours, n) for m, (ours, n) in UNSTATED_PAPER_METRICS.items() if metric in ours and m in by_metric]
        if not unstated:
            return {}, None
        name, ours, caveat = unstated[0]
        found, note = by_metric[name], f"{caveat} (`{name}`): the same published row stands beside our {', '.join(ours)}."
    return ({method: {init: {int(k): float(v) for k, v in (sizes or {}).items()} for init, sizes in (inits or {}).items()}
             for method, inits in (found or {}).items()}, note)


def paper_method(curve: str) -> str:
    """The paper's name for one of our curves. The paper does not state its DPO reference, and the TRL of its time
    used the base model (what `experiment=paper` runs as `dpo[ref=base]`), so its DPO rows stand beside both
    `dpo` and `dpo[ref=base]`; a `variant` curve has no published twin."""
    return "dpo" if curve == "dpo[ref=base]" else curve


def markdown(stats: dict[tuple, dict[str, float]], title: str, paper: dict | None = None,
             warnings: dict[tuple[str, str], str] | None = None) -> str:
    """The report's text; `warnings` (provenance_warnings) go under the heading of their table."""
    lines = [f"# {title}", "", "Cells: mean ± std over seeds (number of seeds) [95% t-interval half-width]; a single "
             "seed shows its value and (1). Data size 0 = the initialisation itself. (paper) rows: the published "
             "numbers, at the paper's data sizes.", ""]
    for task, metric in _order({(k[0], k[1]) for k in stats}, []):
        cells = {k[2:]: v for k, v in stats.items() if k[:2] == (task, metric)}
        ours = sorted({k[2] for k in cells})
        pub, note = published(paper, task, metric)
        # `d2lora[wu250,lr0.001]` (a warm-up ablation's label) is the paper's d2lora: its published row is shown once.
        shown = {(m, i): v for m, i in {k[:2] for k in cells}
                 if (v := pub.get(paper_method(m), {}).get(i.partition("[")[0]))}
        emitted: set[tuple[str, str]] = set()
        sizes = sorted(set(ours).union(*(v.keys() for v in shown.values())))  # the paper's sizes get columns too
        mark = UNSTATED_MARK if note else ""
        lines += [f"## {task}: {metric}", ""]
        if (warnings or {}).get((task, metric)):
            lines += [f"**Warning (provenance):** {warnings[(task, metric)]}.", ""]
        lines += ["| method | init | " + " | ".join(str(s) for s in sizes) + " |",
                  "|---|---|" + "---|" * len(sizes)]
        for method in _order({k[0] for k in cells}, ["sft", "dpo", "orpo"]):
            for init in order_inits({k[1] for k in cells if k[0] == method}):
                row = [_fmt_cell(c) if (c := cells.get((method, init, s))) else "–" for s in sizes]
                lines.append(f"| {method} | {init} | " + " | ".join(row) + " |")
                if (values := shown.get((method, init))) and (method, init.partition("[")[0]) not in emitted:
                    emitted.add((method, init.partition("[")[0]))
                    lines.append(f"| {method} | {init.partition('[')[0]} (paper){mark} | " + " | ".join(
                        f"{values[s]:.2f}" if s in values else "–" for s in sizes) + " |")
        if shown and note:
            lines += ["", f"{mark} {note}"]
        lines.append("")
        paired = []
        for method in _order({k[0] for k in cells}, ["sft", "dpo", "orpo"]):
            inits = {k[1] for k in cells if k[0] == method}
            for plain in _order({i for i in inits if not i.startswith("d2lora")}, ["lora"]):
                for warmed in warmed_twins(plain, inits):
                    diffs = []
                    for s in ours:
                        a, b = cells.get((method, plain, s)), cells.get((method, warmed, s))
                        if a and b:
                            mean, half, n = paired_difference(a["by_seed"], b["by_seed"])
                            diffs.append(f"{mean:+.2f}{_fmt_ci(half)} ({n})" if n else "–")
                        else:
                            diffs.append("–")
                    if any(d != "–" for d in diffs):
                        paired.append(f"| {method} | {warmed} − {plain} | " + " | ".join(diffs) + " |")
        if paired:
            lines += [f"With warm-up minus without, on {metric}, paired by seed: mean ±95% half-width (pairs)", "",
                      "| method | difference | " + " | ".join(str(s) for s in ours) + " |",
                      "|---|---|" + "---|" * len(ours), *paired, ""]
    return "\n".join(lines)


def savings_markdown(stats: dict[tuple, dict[str, Any]], paper: dict | None = None) -> str:
    """"Examples saved" on each task's headline metric (savings.py says how it is read off the curves)."""
    lines = []
    for task, metric in _order({(k[0], k[1]) for k in stats}, []):
        if metric != TASK_METRICS.get(task, [None])[0]:
            continue
        curves: dict[tuple[str, str], dict[int, dict[int, float]]] = defaultdict(dict)
        for k, cell in stats.items():
            if k[:2] == (task, metric):
                curves[(k[2], k[3])][k[4]] = cell["by_seed"]
        pub, _ = published(paper, task, metric)
        rows = []
        for method in _order({m for m, _ in curves}, ["sft", "dpo", "orpo"]):
            inits = {i for m, i in curves if m == method}
            for plain in _order({i for i in inits if not i.startswith("d2lora")}, ["lora"]):
                for warmed in warmed_twins(plain, inits):
                    rows += savings.markdown_rows(method, f"{warmed} vs {plain}", curves[(method, plain)],
                                                  curves[(method, warmed)])
                published_pair = pub.get(paper_method(method), {})
                if plain == "lora" and published_pair.get("lora") and published_pair.get("d2lora"):
                    rows += savings.paper_rows(method, "d2lora vs lora", published_pair["lora"],
                                               published_pair["d2lora"])
        if rows:
            lines += [f"## Examples saved: {task} {metric}", "",
                      "How many task examples the warmed-up init needs to reach LoRA's score at each LoRA size: the "
                      "first crossing of its curve, interpolated linearly in log(n) between measured sizes (linearly "
                      "in n from 0), never extrapolated. Per seed against the same seed's LoRA score; `needs: mean "
                      "±95%` is the t interval over seeds when every seed reached it; `saved` = LoRA size − needs.",
                      "", *savings.HEADER, *rows, ""]
    return "\n".join(lines)


def plot(stats: dict[tuple, dict[str, float]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for task, metric in sorted({(k[0], k[1]) for k in stats}):
        cells = {k[2:]: v for k, v in stats.items() if k[:2] == (task, metric)}
        methods = _order({k[0] for k in cells}, ["sft", "dpo", "orpo"])
        fig, axes = plt.subplots(1, len(methods), figsize=(4.5 * len(methods), 3.6), squeeze=False)
        for ax, method in zip(axes[0], methods):
            for init in order_inits({k[1] for k in cells if k[0] == method}):
                sizes = sorted(k[2] for k in cells if k[:2] == (method, init))
                means = [cells[(method, init, s)]["mean"] for s in sizes]
                stds = [cells[(method, init, s)]["std"] for s in sizes]
                ax.errorbar(sizes, means, yerr=stds, marker="o", capsize=3, label=init)
            ax.set(title=f"{task} / {method}", xlabel="training examples (data_size)", ylabel=metric)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        path = out_dir / f"curve_{task}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', metric)}.png"  # harness/gsm8k/...
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def write(sweep_dir: Path, paper: dict | None = None, failed: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    """Write results.csv, report.md and the PNG curves into sweep_dir; return what was written.

    `failed` (run_name, run_dir, error of each failed job) is listed at the end of report.md."""
    runs = finished_runs(sweep_dir)
    rows = collect(sweep_dir, runs)
    with open(sweep_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")  # provenance: in report.md's warnings
        writer.writeheader()
        writer.writerows(rows)
    stats = aggregate(rows)
    paper = paper_results() if paper is None else paper
    text = markdown(stats, f"Results: {sweep_dir.name}", paper, provenance_warnings(rows))
    text += "\n" + savings_markdown(stats, paper) + "\n" + report_cost.markdown(runs)
    (sweep_dir / "report.md").write_text(text + ("\n" + failures_markdown(failed) if failed else ""))
    return {"rows": rows, "stats": stats, "plots": plot(stats, sweep_dir) if stats else []}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory, e.g. outputs/sweeps/paper-math")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a directory")
    written = write(args.sweep_dir, failed=failed_runs(args.sweep_dir))
    print((args.sweep_dir / "report.md").read_text())
    print(f"{len(written['rows'])} results; wrote {args.sweep_dir / 'results.csv'}, report.md and "
          f"{len(written['plots'])} plot(s)")


if __name__ == "__main__":
    main()
