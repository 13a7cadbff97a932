"""Every sweep definition in sweeps/ runs end to end on the tiny model (fast-dev overrides), through its
make target, so none can rot; plus the sweep guarantees: shared runs computed once, one warm-up per
key (also under concurrency), and resuming a killed sweep loses and duplicates nothing."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from d2lora_exp.report import FORGETTING_METRICS, TASK_METRICS

# The math metrics of a run with the default task.eval.checker=[ours] (no accuracy_math_verify).
OURS = [m for m in TASK_METRICS["math"] if not m.endswith("_math_verify")]

pytestmark = pytest.mark.sweep

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted(p.stem for p in (REPO / "sweeps").glob("*.yaml"))
TARGETS = {"exp1_data_scaling": "sweep-exp1", "exp2_math": "sweep-exp2-math", "exp2_titles": "sweep-exp2-titles",
           "exp3_forgetting": "sweep-forgetting", "exp4_low_data": "sweep-low-data",
           "miniature_math": "sweep-miniature-math", "miniature_titles": "sweep-miniature-titles",
           "d2lora_x_init": "sweep-inits", "miniature_tune": "tune-miniature",
           "miniature_warmup_ablation": "sweep-warmup-ablation"}
SMOKE = ["experiment=smoke", "data_size=0,8", "warmup.size=12"]


@pytest.fixture(scope="module")
def sweep_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    env = {**os.environ, "D2LORA_ROOT": str(root), "D2LORA_CACHE": str(root / "cache"), "WANDB_MODE": "offline",
           "WANDB_SILENT": "true"}
    return root, env


def _make(target: str, args: list[str], env: dict) -> subprocess.CompletedProcess:
    venv = Path(sys.executable).parents[1]
    cmd = ["make", "-C", str(REPO), target, f"VENV={venv}", "STAMP=", f"ARGS={' '.join(args)}"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def _results(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "results.csv") as f:
        return list(csv.DictReader(f))


def _complete_runs(sweep_dir: Path) -> dict[str, dict]:
    runs = {}
    for path in sweep_dir.glob("*/metrics.json"):
        data = json.loads(path.read_text())
        if data["status"] == "complete":
            runs[path.parent.name] = data
    return runs


def test_every_sweep_file_has_a_make_target():
    assert set(SWEEPS) == set(TARGETS), "add the new sweep to TARGETS and to the Makefile"
    makefile = (REPO / "Makefile").read_text()
    for name, target in TARGETS.items():
        assert f"{target}:" in makefile and f"$(SWEEP) {name}" in makefile


def test_math_sweeps_share_their_runs_and_report(sweep_env):
    """Exp1 -> Exp2 -> Exp3 -> Exp4 into one sweep dir: later sweeps reuse what earlier ones computed.

    Exp2's 12 jobs (2 inits x 3 methods x sizes 0, 8) are 12 runs, but data_size=0 trains nothing, so its
    evaluation (of the initialisation) is computed once per init and reused by the other two methods' runs."""
    root, env = sweep_env
    # Its own cache: the module's other sweeps (run before it on this worker or not, as the scheduler decides) build
    # the same smoke warm-up, and "one build served every D2LoRA run" is only checkable from an empty cache.
    env = {**env, "D2LORA_CACHE": str(root / "cache-paper-math")}
    sweep_dir = root / "outputs" / "sweeps" / "paper-math"
    seen: dict[str, float] = {}
    for name, expected_runs in [("exp1_data_scaling", 3), ("exp2_math", 12), ("exp3_forgetting", 12), ("exp4_low_data", 12)]:
        args = SMOKE + (["data_size=8"] if name == "exp1_data_scaling" else [])
        proc = _make(TARGETS[name], args, env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs = _complete_runs(sweep_dir)
        assert len(runs) == expected_runs, (name, sorted(runs))
        for run, data in runs.items():  # a finished run is never recomputed by a later sweep
            mtime = (sweep_dir / run / "metrics.json").stat().st_mtime
            assert seen.setdefault(run, mtime) == mtime, f"{name} recomputed {run}"
            assert "arc_acc" in data["metrics"], "math sweeps evaluate ARC-Easy (forgetting) in every run"
        rows = _results(sweep_dir)
        assert len(rows) == len(runs) * (len(OURS) + len(FORGETTING_METRICS))
        zero = [d for d in runs.values() if d["data_size"] == 0]
        assert len(zero) == (6 if name != "exp1_data_scaling" else 0)
        if zero:  # one evaluation per initialisation, whichever method's job got there first
            assert sorted(d["evaluation"]["reused"] for d in zero) == [False] * 2 + [True] * 4
            assert len({d["evaluation"]["key"] for d in zero}) == 2
        assert (sweep_dir / "report.md").is_file() and (sweep_dir / "curve_math_accuracy.png").is_file()
    report = (sweep_dir / "report.md").read_text()
    assert "| orpo | d2lora |" in report and "## math: arc_acc_norm" in report
    # One warm-up served every D2LoRA run.
    d2lora = [d for d in _complete_runs(sweep_dir).values() if d["init"] == "d2lora"]
    assert len({d["warmup"]["key"] for d in d2lora}) == 1
    assert sum(not d["warmup"]["reused"] for d in d2lora) == 1
    # The summary run holds the table and one learning-curve chart per metric and method.
    summaries = list((sweep_dir / "wandb").glob("offline-run-*"))
    assert summaries
    cli = Path(sys.executable).with_name("wandb")
    latest = max(summaries, key=lambda p: p.stat().st_mtime)
    logged = json.loads(subprocess.run([str(cli), "leet", "inspect", "--summary", "--json", str(latest)],
                                       capture_output=True, text=True, check=True).stdout)
    assert logged["name"] == "summary-paper-math"
    assert logged["summary"]["results"]["nrows"] == len(_results(sweep_dir))
    assert "curve/math/accuracy/orpo_table" in logged["summary"]


@pytest.mark.parametrize("name", ["miniature_math", "miniature_titles"])
def test_miniature_sweep_definitions(sweep_env, name):
    """The miniature grids, shrunk to one seed and two sizes on the embedded tiny model (the real run is
    `make sweep-miniature`, which runs both files)."""
    root, env = sweep_env
    args = SMOKE + ["seed=0", "method=sft", f"sweep_name=smoke-{name}"]
    proc = _make(TARGETS[name], args, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = _complete_runs(root / "outputs" / "sweeps" / f"smoke-{name}")
    assert len(runs) == 4 and {r["init"] for r in runs.values()} == {"lora", "d2lora"}
    assert all(r["config"]["data"]["build"]["sizes"] and r["model"] == "tiny-llama" for r in runs.values())  # smoke world
    makefile = (REPO / "Makefile").read_text()
    in_sweep_miniature = f"$(SWEEP) {name}" in makefile.split("sweep-miniature:")[1].split("sweep-miniature-math:")[0]
    assert in_sweep_miniature


def test_miniature_tune_sweep_splits_curves_by_learning_rate_on_the_validation_split(sweep_env):
    """The learning-rate search runs on the real miniature world (shrunk), scored on validation questions, for
    the LoRA baseline only (a D2LoRA advantage must not come from tuning)."""
    root, env = sweep_env
    args = ["seed=0", "method=sft", "method.learning_rate=1e-3,3e-3", "data_size=8", "warmup.size=12", "eval.limit=4",
            "eval.max_new_tokens=8", "method.num_train_epochs=1", "train.per_device_train_batch_size=4",
            "eval.evaluators=[task]", "sweep_name=smoke-tune"]
    proc = _make("tune-miniature", args, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep_dir = root / "outputs" / "sweeps" / "smoke-tune"
    runs = _complete_runs(sweep_dir)
    assert len(runs) == 2 and {r["variant"] for r in runs.values()} == {"lr0.001", "lr0.003"}
    assert {r["init"] for r in runs.values()} == {"lora"}
    assert all(r["config"]["task"]["eval"]["data"]["path"].endswith("gsm8k_validation.jsonl") for r in runs.values())
    assert "| sft[lr0.003] | lora |" in (sweep_dir / "report.md").read_text()


def test_warmup_ablation_runs_lora_once_and_every_warmup_setting_with_its_cost_and_savings(sweep_env):
    """The warm-up ablation on the smoke world: warm-up size x rate (2 x 2) for D2LoRA, LoRA once per size and seed;
    one cached warm-up per setting, its cost amortised over the runs that reused it; the report gives each warm-up
    rows of its own, paired with LoRA, and the examples-saved table."""
    root, env = sweep_env
    env = {**env, "D2LORA_CACHE": str(root / "cache-ablation")}  # counts its warm-up builds: from an empty cache
    args = ["experiment=smoke", "seed=0", "data_size=0,8", "warmup.size=6,12", "warmup.learning_rate=1e-3,2e-3",
            "sweep_name=smoke-ablation"]
    proc = _make("sweep-warmup-ablation", args, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep_dir = root / "outputs" / "sweeps" / "smoke-ablation"
    runs = _complete_runs(sweep_dir)
    warmed = {f"d2lora-sft-math-n{n}-s0-wu{size}-lr{lr}" for n in (0, 8) for size in (6, 12) for lr in (0.001, 0.002)}
    assert set(runs) == {"lora-sft-math-n0-s0", "lora-sft-math-n8-s0"} | warmed
    keys = {name: runs[name]["cost"]["warmup"]["key"] for name in warmed}
    assert len(set(keys.values())) == 4 and sum(not runs[n]["cost"]["warmup"]["reused"] for n in warmed) == 4
    assert all(runs[n]["cost"]["adapt"]["flops"] > 0 for n in runs if "-n8-" in n)
    report = (sweep_dir / "report.md").read_text()
    table = report.split("## math: accuracy\n")[1].split("\n## ")[0]
    for size in (6, 12):
        for lr in (0.001, 0.002):
            assert f"| sft | d2lora[wu{size},lr{lr}] |" in table and f"| sft | d2lora[wu{size},lr{lr}] − lora |" in table
    assert "| sft | d2lora[wu12,lr0.002] vs lora | 8 |" in report.split("## Examples saved: math accuracy")[1]
    cost = report.split("## Cost\n")[1]
    for key in set(keys.values()):  # each warm-up served its n=0 and n=8 runs
        assert f"| `{key[:8]}` |" in cost and cost.split(f"| `{key[:8]}` |")[1].split("|")[3].strip() == "2"


def test_init_sweep_pairs_every_init_with_its_warmed_up_twin(sweep_env):
    root, env = sweep_env
    proc = _make("sweep-inits", ["experiment=smoke", "data_size=8", "warmup.size=12", "calibration.rows=6"], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep_dir = root / "outputs" / "sweeps" / "paper-math-inits"
    labels = {r["init"] for r in _complete_runs(sweep_dir).values()}
    assert labels == {"lora", "d2lora", "pissa", "d2lora+pissa", "olora", "d2lora+olora", "eva", "d2lora+eva",
                      "corda", "d2lora+corda"}
    report = (sweep_dir / "report.md").read_text()
    assert "| sft | d2lora+corda − corda |" in report and "| sft | d2lora − lora |" in report


def test_titles_sweep(sweep_env):
    root, env = sweep_env
    proc = _make("sweep-exp2-titles", SMOKE, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep_dir = root / "outputs" / "sweeps" / "paper-titles"
    assert len(_complete_runs(sweep_dir)) == 4
    assert {r["metric"] for r in _results(sweep_dir)} == {"rouge1", "rouge2", "rougeL"}


def _sweep_cmd(sweep_name: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "d2lora_exp", "--multirun", "experiment=smoke", f"sweep_name={sweep_name}", *overrides]


def test_four_run_d2lora_sweep_trains_the_warmup_once(tmp_path):
    env = {**os.environ, "D2LORA_ROOT": str(tmp_path), "D2LORA_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    proc = subprocess.run(_sweep_cmd("once", "init=d2lora", "method=sft,orpo,dpo", "data_size=8,16", "warmup.size=12"),
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _complete_runs(tmp_path / "outputs" / "sweeps" / "once")
    assert len(runs) == 6
    assert len({r["warmup"]["key"] for r in runs.values()}) == 1
    assert sorted(r["warmup"]["reused"] for r in runs.values()) == [False] + [True] * 5
    assert len(list((tmp_path / "cache" / "warmups").glob("*/warmup.json"))) == 1


def test_two_concurrent_jobs_build_one_warmup(tmp_path):
    env = {**os.environ, "D2LORA_ROOT": str(tmp_path), "D2LORA_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    # Build the tiny model first so both jobs reach the warm-up at about the same time.
    from d2lora_exp import tiny_model

    tiny_model.build(tmp_path / "cache" / "models" / "tiny-llama-v1")
    procs = [subprocess.Popen([sys.executable, "-m", "d2lora_exp", "experiment=smoke", "init=d2lora", f"method={m}",
                               "warmup.size=48", f"hydra.run.dir={tmp_path / m}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for m in ("sft", "dpo")]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    results = [json.loads((tmp_path / m / "metrics.json").read_text()) for m in ("sft", "dpo")]
    assert results[0]["warmup"]["key"] == results[1]["warmup"]["key"]
    assert sorted(r["warmup"]["reused"] for r in results) == [False, True]
    assert results[0]["warmup"]["digest"] == results[1]["warmup"]["digest"]
    assert len(list((tmp_path / "cache" / "warmups").iterdir())) == 2  # the adapter dir and its lock file


def test_killed_sweep_resumes_without_losing_or_duplicating(tmp_path):
    env = {**os.environ, "D2LORA_ROOT": str(tmp_path), "D2LORA_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    sweep_dir = tmp_path / "outputs" / "sweeps" / "killed"
    cmd = _sweep_cmd("killed", "init=lora", "method=sft", "data_size=0,4,8,12")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.time() + 300
    while len(_complete_runs(sweep_dir)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {name: (sweep_dir / name / "metrics.json").read_text() for name in _complete_runs(sweep_dir)}
    assert 2 <= len(before) < 4, "the kill should land mid-sweep"

    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = rerun.stdout + rerun.stderr  # progress: runs done / to do, and which were already complete
    assert "sweep killed: 4 runs" in log and f"4/4 runs done ({len(before)} already complete)" in log
    runs = _complete_runs(sweep_dir)
    assert sorted(runs) == [f"lora-sft-math-n{n}-s0" for n in (0, 12, 4, 8)]
    for name, text in before.items():  # finished results kept byte for byte
        assert (sweep_dir / name / "metrics.json").read_text() == text
    rows = _results(sweep_dir)
    assert len(rows) == 4 * len(OURS)
    assert len({(r["data_size"], r["metric"]) for r in rows}) == len(rows)  # no duplicates


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "D2LORA_ROOT": str(tmp_path), "D2LORA_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}


def _digests(run_dir: Path) -> dict[str, str]:
    """sha256 of every file under run_dir, and a link by where it points: W&B links each run's logs/debug-core.log
    to its service's log outside the run, which other processes' W&B services may append to."""
    return {str(p.relative_to(run_dir)): f"-> {os.readlink(p)}" if p.is_symlink()
            else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_symlink() or p.is_file()}


def test_refused_and_skipped_reruns_leave_every_file_of_finished_runs_unchanged(tmp_path):
    """Hydra writes a job's .hydra files before the job runs: a re-run that is refused (another config) or skipped
    (same config) must not leave them describing itself instead of the finished result. The log is appended to."""
    env = _env(tmp_path)
    sweep_dir = tmp_path / "outputs" / "sweeps" / "kept"
    cmd = _sweep_cmd("kept", "init=lora", "method=sft", "data_size=0,4")
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = sorted(_complete_runs(sweep_dir))
    assert len(runs) == 2
    before = {run: _digests(sweep_dir / run) for run in runs}
    logs = {run: (sweep_dir / run / "d2lora_exp.log").read_bytes() for run in runs}
    assert all(f".hydra/{name}" in before[run] for run in runs for name in ("config.yaml", "overrides.yaml"))

    def assert_unchanged(after: str) -> None:
        for run in runs:
            files = _digests(sweep_dir / run)
            log = (sweep_dir / run / "d2lora_exp.log").read_bytes()
            assert log.startswith(logs[run]), f"{after} overwrote the log of {run}"
            assert {k: v for k, v in files.items() if k != "d2lora_exp.log"} == \
                {k: v for k, v in before[run].items() if k != "d2lora_exp.log"}, f"{after} changed {run}"

    refused = subprocess.run(cmd + ["method.learning_rate=0.5"], capture_output=True, text=True, env=env, timeout=600)
    assert refused.returncode != 0 and "already holds a finished run of a different config" in refused.stderr
    assert_unchanged("the refused re-run")
    skipped = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    assert "2/2 runs done (2 already complete)" in skipped.stdout + skipped.stderr
    assert_unchanged("the skipped re-run")


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"]],
                         ids=["basic", "joblib"])
def test_a_sweep_with_a_failed_job_reports_what_finished_and_exits_nonzero(tmp_path, launcher):
    sweep_dir = tmp_path / "outputs" / "sweeps" / "partial"
    proc = subprocess.run(_sweep_cmd("partial", "init=lora", "method=sft", "data_size=4,99999", *launcher),
                          capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    failed = json.loads((sweep_dir / "lora-sft-math-n99999-s0" / "metrics.json").read_text())
    assert failed["status"] == "failed" and "99999" in failed["error"]
    assert {r["data_size"] for r in _results(sweep_dir)} == {"4"}  # the run that finished is reported
    report = (sweep_dir / "report.md").read_text()
    assert "| sft | lora |" in report and (sweep_dir / "curve_math_accuracy.png").is_file()
    assert "lora-sft-math-n99999-s0" in report and failed["error"] in report  # the failed run and why
    log = proc.stdout + proc.stderr
    assert "1 of 2 runs failed" in log and f"lora-sft-math-n99999-s0: {failed['error']}" in log


def test_parallel_n0_runs_evaluate_once_and_never_move_each_others_files(tmp_path):
    """n=0 runs of three methods in three joblib workers at once: one evaluation of the initialisation, computed
    by one job and reused by the two others, and no job moves a live job's files aside."""
    sweep_dir = tmp_path / "outputs" / "sweeps" / "zero"
    proc = subprocess.run(_sweep_cmd("zero", "init=lora", "method=sft,dpo,orpo", "data_size=0",
                                     "hydra/launcher=parallel", "hydra.launcher.n_jobs=3"),
                          capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list(_complete_runs(sweep_dir).values())
    assert len(runs) == 3 and len({r["pid"] for r in runs}) > 1  # really in several processes
    assert sorted(r["evaluation"]["reused"] for r in runs) == [False, True, True]
    assert len({r["evaluation"]["key"] for r in runs}) == 1
    assert not list(sweep_dir.rglob(".attempt-*"))
