"""The paper's "reduces data cost" claim, made measurable: how many task examples D2LoRA needs to match LoRA.

For each LoRA point (method, size n_L > 0) the target is LoRA's score there; D2LoRA's curve is read for the first
size at which it reaches that score, interpolating between measured sizes linearly in log(n) (linearly in n
between 0 and the first size above it, log(0) being undefined). Nothing is extrapolated: a curve already at or
above the target at its smallest size (> 0) needs "≤ that size", one that never reaches it "not reached (> its
largest size)". Done per seed (LoRA's and D2LoRA's runs of the same seed), the seeds' values give a 95% t interval
when every seed reached the target; the mean curves give the point estimate; the published numbers, where the
paper has both curves, get theirs (no seeds, no interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .stats import mean_ci


@dataclass(frozen=True)
class Needed:
    """Examples needed to reach a score: `n` when reached within the curve, else a bound and what it means."""

    n: float | None
    bound: int | None = None
    kind: str = "reached"  # or "below_smallest" (reached at or before the smallest size > 0), "not_reached"

    def text(self) -> str:
        if self.kind == "below_smallest":
            return f"≤ {self.bound} (below the smallest size)"
        if self.kind == "not_reached":
            return f"not reached (> {self.bound})"
        return f"{self.n:.0f}"


def examples_needed(curve: dict[int, float], target: float) -> Needed:
    """The first size at which the piecewise-interpolated curve reaches `target` (higher is better)."""
    sizes = sorted(curve)
    if not sizes:
        raise ValueError("an empty curve reaches nothing")
    if curve[sizes[0]] >= target:
        return Needed(0.0) if sizes[0] == 0 else Needed(None, sizes[0], "below_smallest")
    for a, b in zip(sizes, sizes[1:]):
        ya, yb = curve[a], curve[b]
        if ya < target <= yb:
            frac = (target - ya) / (yb - ya)
            if a == 0:
                return Needed(frac * b)
            return Needed(math.exp(math.log(a) + frac * (math.log(b) - math.log(a))))
    return Needed(None, sizes[-1], "not_reached")


@dataclass(frozen=True)
class Saving:
    """One LoRA point: its score, what D2LoRA needs on the mean curves and per seed, and the interval over seeds."""

    size: int
    target: float
    on_means: Needed
    per_seed: dict[int, Needed]
    needed_ci: tuple[float, float] | None  # mean and 95% half-width of the seeds' needs, when every seed reached it

    def saved(self) -> str:
        """Examples saved, n_L - needed: over seeds when every seed reached the target, else from the mean curves."""
        if self.needed_ci is not None:
            mean, half = self.needed_ci
            return f"{self.size - mean:.0f}" + ("" if math.isnan(half) else f" ±{half:.0f}")
        return f"{self.size - self.on_means.n:.0f} (mean curves)" if self.on_means.n is not None else "–"


def saving(size: int, lora: dict[int, dict[int, float]], warmed: dict[int, dict[int, float]]) -> Saving | None:
    """`lora`, `warmed`: data_size -> seed -> score. None when LoRA has no score at `size` or D2LoRA no curve."""
    if size not in lora or not warmed:
        return None
    target = _mean(lora[size].values())
    on_means = examples_needed({n: _mean(by_seed.values()) for n, by_seed in warmed.items()}, target)
    per_seed = {}
    for seed, score in sorted(lora[size].items()):
        curve = {n: by_seed[seed] for n, by_seed in warmed.items() if seed in by_seed}
        if curve:
            per_seed[seed] = examples_needed(curve, score)
    reached = [need.n for need in per_seed.values() if need.kind == "reached"]
    ci = mean_ci(reached) if reached and len(reached) == len(per_seed) else None
    return Saving(size, target, on_means, per_seed, ci)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def markdown_rows(method: str, label: str, lora: dict[int, dict[int, float]],
                  warmed: dict[int, dict[int, float]]) -> list[str]:
    """One table row per LoRA size > 0 (see `markdown_header`)."""
    rows = []
    for size in sorted(n for n in lora if n > 0):
        found = saving(size, lora, warmed)
        if found is None:
            continue
        seeds = ", ".join(f"s{seed}: {need.text()}" for seed, need in found.per_seed.items()) or "–"
        interval = "–"
        if found.needed_ci is not None:
            mean, half = found.needed_ci
            interval = f"{mean:.0f}" + ("" if math.isnan(half) else f" ±{half:.0f}") + f" ({len(found.per_seed)})"
        elif found.per_seed:
            reached = sum(need.kind == "reached" for need in found.per_seed.values())
            interval = f"no interval: {reached} of {len(found.per_seed)} seeds reached it within the curve"
        rows.append(f"| {method} | {label} | {size} | {found.target:.2f} | {found.on_means.text()} | {seeds} | "
                    f"{interval} | {found.saved()} |")
    return rows


def paper_rows(method: str, label: str, lora: dict[int, float], warmed: dict[int, float]) -> list[str]:
    """The same reading of the published curves (one value per size: no seeds, no interval)."""
    rows = []
    for size in sorted(n for n in lora if n > 0):
        if not warmed:
            continue
        need = examples_needed(warmed, lora[size])
        saved = f"{size - need.n:.0f}" if need.n is not None else "–"
        rows.append(f"| {method} | {label} (paper) | {size} | {lora[size]:.2f} | {need.text()} | – | – | {saved} |")
    return rows


HEADER = ["| method | pair | LoRA size | LoRA score | needs (mean curves) | needs per seed | needs: mean ±95% (seeds) "
          "| saved |", "|---|---|---|---|---|---|---|---|"]
