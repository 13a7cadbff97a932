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
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .stats import mean_ci, paired_difference

# Metrics reported per task, the headline first; ARC-Easy appears where the forgetting eval ran.
TASK_METRICS = {"math": ["accuracy", "strict_accuracy"], "titles": ["rougeL", "rouge1", "rouge2"]}
FORGETTING_METRICS = ["arc_acc_norm", "arc_acc"]
CHAT_METRICS = ["chat_stop", "chat_exact"]  # the warm-up's own behaviour, where the chat evaluator ran
INIT_ORDER = ["lora", "d2lora"] + [f"{w}{b}" for b in ("pissa", "olora", "eva", "corda") for w in ("", "d2lora+")]
FIELDS = ["task", "method", "init", "data_size", "seed", "dpo_reference", "metric", "value", "run_dir"]


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per (finished run, reported metric); a data_size=0 run is its method's first curve point."""
    rows = []
    for path in sorted(sweep_dir.rglob("metrics.json")):
        if any(part.startswith(".attempt-") for part in path.parts):
            continue
        data = json.loads(path.read_text())
        if data.get("status") != "complete":
            continue
        for metric, value in (data.get("metrics") or {}).items():
            if metric in TASK_METRICS.get(data["task"], []) + FORGETTING_METRICS + CHAT_METRICS:
                rows.append({"task": data["task"], "method": curve_name(data), "init": data["init"],
                             "data_size": int(data["data_size"]), "seed": int(data["seed"]),
                             "dpo_reference": data.get("dpo_reference"), "metric": metric, "value": float(value),
                             "run_dir": str(path.parent)})
    return rows


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


def _order(values, preferred: list[str]) -> list:
    return sorted(set(values), key=lambda v: (preferred.index(v) if v in preferred else len(preferred), v))


def paper_results(path: Path | None = None) -> dict:
    """Published numbers: task -> metric -> method -> init -> {data_size: value} (conf/paper_results.yaml)."""
    from omegaconf import OmegaConf

    from .config import config_dir

    path = path or config_dir() / "paper_results.yaml"  # shipped with the configs: missing = a broken install
    return OmegaConf.to_container(OmegaConf.load(path))


def markdown(stats: dict[tuple, dict[str, float]], title: str, paper: dict | None = None) -> str:
    lines = [f"# {title}", "", "Cells: mean ± std over seeds (number of seeds) [95% t-interval half-width]. "
             "Data size 0 = the initialisation itself.", ""]
    for task, metric in _order({(k[0], k[1]) for k in stats}, []):
        cells = {k[2:]: v for k, v in stats.items() if k[:2] == (task, metric)}
        sizes = sorted({k[2] for k in cells})
        lines += [f"## {task}: {metric}", "", "| method | init | " + " | ".join(str(s) for s in sizes) + " |",
                  "|---|---|" + "---|" * len(sizes)]
        for method in _order({k[0] for k in cells}, ["sft", "dpo", "orpo"]):
            for init in _order({k[1] for k in cells if k[0] == method}, INIT_ORDER):
                row = [f"{c['mean']:.2f} ± {c['std']:.2f} ({c['n']})" + (f" [{_fmt_ci(c['ci95']).strip()}]" if c["n"] > 1 else "")
                       if (c := cells.get((method, init, s))) else "–" for s in sizes]
                lines.append(f"| {method} | {init} | " + " | ".join(row) + " |")
                published = ((paper or {}).get(task, {}).get(metric, {}).get(method, {}) or {}).get(init) or {}
                if any(int(k) in sizes for k in published):
                    values = {int(k): v for k, v in published.items()}
                    lines.append(f"| {method} | {init} (paper) | " + " | ".join(
                        f"{values[s]:.2f}" if s in values else "–" for s in sizes) + " |")
        lines.append("")
        paired = []
        for method in _order({k[0] for k in cells}, ["sft", "dpo", "orpo"]):
            for plain in _order({k[1] for k in cells if k[0] == method and not k[1].startswith("d2lora")}, ["lora"]):
                warmed = "d2lora" if plain == "lora" else f"d2lora+{plain}"
                diffs = []
                for s in sizes:
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
                      "| method | difference | " + " | ".join(str(s) for s in sizes) + " |",
                      "|---|---|" + "---|" * len(sizes), *paired, ""]
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
            for init in _order({k[1] for k in cells if k[0] == method}, INIT_ORDER):
                sizes = sorted(k[2] for k in cells if k[:2] == (method, init))
                means = [cells[(method, init, s)]["mean"] for s in sizes]
                stds = [cells[(method, init, s)]["std"] for s in sizes]
                ax.errorbar(sizes, means, yerr=stds, marker="o", capsize=3, label=init)
            ax.set(title=f"{task} / {method}", xlabel="training examples (data_size)", ylabel=metric)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        path = out_dir / f"curve_{task}_{metric}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def write(sweep_dir: Path, paper: dict | None = None, failed: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    """Write results.csv, report.md and the PNG curves into sweep_dir; return what was written.

    `failed` (run_name, run_dir, error of each failed job) is listed at the end of report.md."""
    rows = collect(sweep_dir)
    with open(sweep_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    stats = aggregate(rows)
    paper = paper_results() if paper is None else paper
    text = markdown(stats, f"Results: {sweep_dir.name}", paper)
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
