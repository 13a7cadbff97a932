"""The demo's spread: `make demo` over seeds and thread counts, each from a cold cache, and the interval a new run
(another seed, thread count or CPU) should land in, written to docs/miniature/demo_expected.json (the README quotes
it; tests/test_demo.py checks the demo lands inside it with 1 and 2 threads).

A different thread count sums in another order: the same kind of float noise another CPU brings, so runs over
seeds x threads stand in for "any machine". The interval is the 99% prediction interval of one new run,
mean ± t(0.995, n-1) * s * sqrt(1 + 1/n), not the range of what was seen: 99%, not 95%, because CI checks two new
runs every time (with 95% one CI in ten would fail on a demo that is fine).

    python benchmarks/demo_spread.py --seeds 0 1 2 3 4 --threads 1 2 --out-dir /tmp/demo-spread --write  # ~17 min
    python benchmarks/demo_spread.py --collect /tmp/demo-spread                                    # runs done by hand
    python benchmarks/demo_spread.py --args experiment=miniature_v3 --out-dir /tmp/v3 --write \
        --expected docs/miniature/demo_expected_v3.json                                          # world v3's demo
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPECTED = REPO / "docs" / "miniature" / "demo_expected.json"
METRIC = "accuracy"
# two-sided 99%: t_{0.995, df} for df = 1..20 (scipy.stats.t.ppf; kept here to need no scipy)
T995 = [63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.25, 3.169, 3.106, 3.055, 3.012, 2.977, 2.947, 2.921,
        2.898, 2.878, 2.861, 2.845]


def run_one(out_dir: Path, seed: int, threads: int, extra: str = "") -> Path:
    """`make demo` with `seed`, `threads` (OMP/MKL) and a cache of its own, so the warm-up is trained with them too."""
    run = out_dir / f"s{seed}-t{threads}"
    env = {**os.environ, "D2LORA_ROOT": str(run), "D2LORA_CACHE": str(run / "cache"), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "OMP_WAIT_POLICY": "PASSIVE"}  # idle threads sleep beside the other run (as tests/test_demo.py); no number moves
    venv = Path(sys.executable).parents[1]
    overrides = " ".join(filter(None, [extra, f"seed={seed}", f"hydra.run.dir={run / 'run'}"]))
    with open(out_dir / f"s{seed}-t{threads}.log", "w") as log:
        subprocess.run(["make", "-C", str(REPO), "demo", f"VENV={venv}", "STAMP=", f"ARGS={overrides}"], env=env,
                       stdout=log, stderr=subprocess.STDOUT, check=True)
    return run / "run" / "metrics.json"


def collect(out_dir: Path) -> list[dict]:
    """Every finished demo run under `out_dir` (s<seed>-t<threads>/run/metrics.json)."""
    runs = []
    for run in sorted(out_dir.glob("s*-t*/")):
        path = run / "run" / "metrics.json"
        data = json.loads(path.read_text()) if path.is_file() else {}
        if data.get("status") != "complete":  # a failed run must not vanish from the interval
            raise SystemExit(f"{run}: not a complete demo run (status {data.get('status')}); rerun or remove it")
        runs.append({"seed": data["seed"], "threads": data["provenance"]["machine"]["torch_threads"],
                     METRIC: data["metrics"][METRIC], "eval_n": data["metrics"]["eval_n"], "seconds": data["timings"]["total"],
                     "cpu": data["provenance"]["machine"]["cpu"], "commit": data["provenance"]["code"].get("commit")})
    return runs


def interval(values: list[float], rows: int) -> dict:
    """The 99% prediction interval of one new value (% of `rows` problems), clipped to 0..100.

    The spread used is the larger of the runs' own standard deviation and a binomial floor: the standard deviation
    of one run's score if each problem failed at the 99% upper bound of the failure rate of the run that missed most.
    Without the floor, runs that all scored 100% would state [100, 100], and one problem missed on
    another CPU would "fail" a demo that is fine."""
    n = len(values)
    if not 3 <= n <= len(T995) + 1:
        raise SystemExit(f"need 3 to {len(T995) + 1} finished runs for an interval, found {n}")
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    # Every run reads the same `rows` problems, so their misses are not independent across runs: the floor counts
    # one run's problems, at the most any run missed (counting n x rows trials would make the floor too narrow).
    failures = max(round((100.0 - v) / 100.0 * rows) for v in values)
    rate = _upper_rate(failures, rows)
    floor = 100.0 * math.sqrt(rate * (1 - rate) / rows)
    half = T995[n - 2] * max(sd, floor) * math.sqrt(1 + 1 / n)
    return {"mean": round(mean, 2), "std": round(sd, 2), "binomial_floor_std": round(floor, 2), "n": n,
            "rows_per_run": rows, "low": round(max(0.0, mean - half), 2), "high": round(min(100.0, mean + half), 2)}


def _upper_rate(failures: int, attempts: int) -> float:
    """One-sided 99% upper bound of a failure rate (Clopper-Pearson, by bisection on the binomial tail)."""
    def tail(p: float) -> float:  # P(X <= failures | p)
        if p >= 1.0:
            return 0.0 if failures < attempts else 1.0
        log_comb = lambda k: math.lgamma(attempts + 1) - math.lgamma(k + 1) - math.lgamma(attempts - k + 1)
        return sum(math.exp(log_comb(k) + k * math.log(p) + (attempts - k) * math.log1p(-p)) if p > 0 else float(k == 0)
                   for k in range(failures + 1))

    low, high = failures / attempts, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if tail(mid) > 0.01 else (low, mid)
    return high


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out-dir", type=Path, default=Path("outputs/demo-spread"))
    parser.add_argument("--collect", type=Path, help="only read the runs already under this directory")
    parser.add_argument("--write", action="store_true", help="write the interval to --expected")
    parser.add_argument("--expected", type=Path, default=EXPECTED,
                        help=f"the file --write writes (default {EXPECTED.relative_to(REPO)}, the default demo's)")
    parser.add_argument("--args", default="", help="overrides for every demo run, e.g. experiment=miniature_v3 (world "
                        "v3's demo, docs/miniature/demo_expected_v3.json); the file's command records them")
    args = parser.parse_args(argv)
    out_dir = args.collect or args.out_dir
    if not args.collect:
        out_dir.mkdir(parents=True, exist_ok=True)
        jobs = [(s, t) for s in args.seeds for t in args.threads]
        with ThreadPoolExecutor(max_workers=2) as pool:  # two at a time on 2 cores
            list(pool.map(lambda job: run_one(out_dir, *job, args.args), jobs))
    runs = collect(out_dir)
    rows = {r["eval_n"] for r in runs}
    if len(rows) != 1:
        raise SystemExit(f"the runs evaluated different numbers of problems: {sorted(rows)}")
    command = f"make demo ARGS={args.args}" if args.args else "make demo"
    result = {"command": command, "metric": METRIC, **interval([r[METRIC] for r in runs], rows.pop()),
              "how": "99% prediction interval of one new run: mean ± t(0.995, n-1) * max(s, binomial floor) * sqrt(1 + 1/n) "
                     "over the runs below (seeds x OMP threads, each from a cold cache); benchmarks/demo_spread.py",
              "runs": runs}
    print(json.dumps(result, indent=1))
    if args.write:
        args.expected.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
