"""The cost sections of a sweep's report: each warm-up's cost spread over the runs that reuse it, beside what their
adaptations cost, and the adaptation cost per curve point (metrics.json `cost`, cost.py's formula)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from . import cost


def _flops(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def warmups(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per warm-up (cache key) the sweep's runs started from: its cost (recorded by the job that built it)
    and the runs that used it, n=0 ones included (they evaluate it)."""
    found: dict[str, dict[str, Any]] = {}
    for run in runs:
        warm = (run.get("cost") or {}).get("warmup")
        if not warm or not warm.get("key"):
            continue
        entry = found.setdefault(warm["key"], {**warm, "task": run["task"], "init": run["init_label"],
                                                "seed": run["seed"], "users": []})
        entry["users"].append(run)
    order = {init: i for i, init in enumerate(order_inits(e["init"] for e in found.values()))}
    return sorted(found.values(), key=lambda e: (e["task"], order[e["init"]], e["seed"], e["key"]))


def _warmup_rows(entries: list[dict[str, Any]]) -> list[str]:
    rows = []
    for e in entries:
        users = e["users"]
        adapt = [u["cost"]["adapt"]["flops"] for u in users if (u["cost"].get("adapt") or {}).get("flops") is not None]
        per_run = e["flops"] / len(users) if e.get("flops") is not None else None
        tokens = "–" if e.get("tokens") is None else f"{e['tokens']:,}"
        seconds = "–" if e.get("seconds") is None else f"{e['seconds']:.0f}"
        mean_adapt = f"{_flops(statistics.fmean(adapt))} ({len(adapt)})" if adapt else "–"
        rows.append(f"| {e['task']} | {e['init']} | {e['seed']} | `{e['key'][:8]}` | {tokens} | {_flops(e.get('flops'))} "
                    f"| {seconds} | {len(users)} | {_flops(per_run)} | {mean_adapt} |")
    return rows


def _adaptation_rows(runs: list[dict[str, Any]]) -> tuple[list[int], list[str]]:
    cells: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        adapt = (run.get("cost") or {}).get("adapt")
        if adapt and adapt.get("flops") is not None:
            cells[(run["task"], _curve(run), run["init_label"], int(run["data_size"]))].append(adapt)
    sizes = sorted({k[3] for k in cells})
    rows = []
    order = {init: i for i, init in enumerate(order_inits(k[2] for k in cells))}
    for task, method, init in sorted({k[:3] for k in cells}, key=lambda k: (k[0], k[1], order[k[2]])):
        row = []
        for size in sizes:
            spent = cells.get((task, method, init, size))
            if not spent:
                row.append("–")
                continue
            mean = {k: statistics.fmean(s[k] for s in spent) for k in ("flops", "tokens", "seconds")}
            row.append(f"{mean['flops']:.3g} ({mean['tokens'] / 1000:.1f}k tok, {mean['seconds']:.0f} s)")
        rows.append(f"| {task} | {method} | {init} | " + " | ".join(row) + " |")
    return sizes, rows


def _curve(run: dict[str, Any]) -> str:
    from .report import curve_name  # report imports this module

    return curve_name(run)


def order_inits(inits) -> list[str]:
    from .report import order_inits as order  # report imports this module

    return order(inits)


def markdown(runs: list[dict[str, Any]]) -> str:
    """Both cost tables; empty when no run of the sweep recorded its cost."""
    entries = warmups(runs)
    sizes, adaptation = _adaptation_rows(runs)
    if not entries and not adaptation:
        return ""
    lines = ["## Cost", "", f"Training FLOPs by the formula in each metrics.json's `cost.formula`: {cost.FORMULA}. "
             "Tokens = real (non-padding) tokens trained on.", ""]
    missing = sum(1 for run in runs if "cost" not in run)
    if missing:
        lines += [f"{missing} of {len(runs)} runs record no cost (finished before it was recorded): left out.", ""]
    if entries:
        lines += ["**The warm-up, amortised over the runs that reuse it** (its cost is paid once, by the job that "
                  "trained the cached entry; `runs` counts every run of this sweep that started from it, n=0 "
                  "included; the last column: the mean adaptation FLOPs of those runs, (runs with n > 0))", "",
                  "| task | warm-up | seed | key | tokens | FLOPs | seconds | runs | FLOPs per run | mean adaptation "
                  "FLOPs |", "|---|---|---|---|---|---|---|---|---|---|", *_warmup_rows(entries), ""]
    if adaptation:
        lines += ["**Adaptation cost per point**: mean over seeds of FLOPs (real tokens, training seconds)", "",
                  "| task | method | init | " + " | ".join(str(s) for s in sizes) + " |",
                  "|---|---|---|" + "---|" * len(sizes), *adaptation, ""]
    return "\n".join(lines)
