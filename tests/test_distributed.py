"""More than one process per run: `torchrun --nproc-per-node 2 -m d2lora_exp ...` (gloo on CPU, DDP) trains what one
process trains with the same global batch, and writes what one process writes: one run directory, one metrics.json,
one W&B run per job, one warm-up in the cache; a stop signal that reaches one rank stops both at the same step, and
the rerun resumes to the uninterrupted run's adapter (with the model sharded by FSDP too).

The reference is one process with per_device_train_batch_size=2 and gradient_accumulation_steps=2: DDP averages the
two ranks' gradients exactly as gradient accumulation averages two micro-batches (TRL's DPO and ORPO average their loss
per micro-batch, so halving the batch of one process would not be the same loss: ORPO's NLL term is a token mean).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from d2lora_exp.build_once import MARKER

pytestmark = pytest.mark.e2e

STOPPER = Path(__file__).with_name("stop_at_step.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
# Learning rates high enough that two steps move every adapter far beyond the tolerance; dropout off (its masks are
# drawn per process: two processes cannot draw the one process's masks).
COMMON = ["experiment=smoke", "device=cpu", "lora.dropout=0", "method.learning_rate=1e-2", "warmup.learning_rate=1e-2",
          "train.per_device_train_batch_size=2", "wandb.mode=offline"]
SWEEP = ["-m", "method=sft,dpo,orpo", "init=lora,d2lora"]
RUNS = [f"{init}-{method}-math-n8-s0" for method in ("sft", "dpo", "orpo") for init in ("lora", "d2lora")]
# Measured: 0.0 for every method and init (the adapters are bitwise equal); a small margin for other CPUs' reductions.
TOLERANCE = 1e-6


def _env(root: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "D2LORA_ROOT": str(root), "D2LORA_CACHE": str(root / "cache"), "WANDB_SILENT": "true",
            "OMP_NUM_THREADS": "1", **extra}


def _launch(cmd: list[str], root: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(root, **extra), timeout=900)


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Path:
    """Every method x (LoRA, D2LoRA) trained by two processes, as one Hydra multirun under torchrun."""
    root = tmp_path_factory.mktemp("two")
    proc = _launch([*TORCHRUN, "-m", "d2lora_exp", *SWEEP, *COMMON, "sweep_name=two"], root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root


@pytest.fixture(scope="module")
def one(tmp_path_factory) -> Path:
    """The same runs by one process, the same global batch by gradient accumulation."""
    root = tmp_path_factory.mktemp("one")
    # DPO precomputes its reference log-probs in one process only (methods/dpo.py: TRL 1.16 cannot share them across
    # ranks): the one-process runs compute them per step too, as the two-process runs do.
    proc = _launch([sys.executable, "-m", "d2lora_exp", *SWEEP, *COMMON, "train.gradient_accumulation_steps=2",
                    "++method.precompute_ref=false",
                    "sweep_name=one"], root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _adapter(path: Path) -> dict:
    return load_file(str(path / "adapter_model.safetensors"))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("run", RUNS)
def test_two_processes_train_the_adapter_of_one_with_the_same_global_batch(two, one, run):
    mine, ref = two / "outputs/sweeps/two" / run, one / "outputs/sweeps/one" / run
    ours, theirs = _metrics(mine), _metrics(ref)
    assert ours["status"] == theirs["status"] == "complete"
    assert (ours["world_size"], theirs["world_size"]) == (2, 1)
    assert ours["adapt"]["steps"] == theirs["adapt"]["steps"] == 2  # 8 rows, global batch 4
    trained = _adapter(mine / "adapter")
    assert _max_diff(trained, _adapter(ref / "adapter")) <= TOLERANCE
    # The test can fail: training moved the adapter far beyond the tolerance (LoRA's B starts at 0).
    if run.startswith("lora-"):
        assert max(float(t.abs().max()) for k, t in trained.items() if "lora_B" in k) > 1e3 * TOLERANCE
    assert ours["metrics"] == theirs["metrics"]
    # Tokens are summed over the ranks: the same rows, so the same real tokens (padding differs per micro-batch).
    assert ours["adapt"]["tokens"]["non_padding"] == theirs["adapt"]["tokens"]["non_padding"] > 0


def test_two_processes_share_one_warmup_trained_together(two, one):
    warmups = [p for p in (two / "cache/warmups").iterdir() if p.is_dir()]
    assert len(warmups) == 1 and (warmups[0] / MARKER).is_file()  # built once, by the main rank, in place
    assert not list((two / "cache/warmups").glob("*.tmp-*"))
    reference = next(p for p in (one / "cache/warmups").iterdir() if p.is_dir())
    assert _max_diff(_adapter(warmups[0]), _adapter(reference)) <= TOLERANCE
    d2lora = [_metrics(two / "outputs/sweeps/two" / r) for r in RUNS if r.startswith("d2lora-")]
    assert sorted(m["warmup"]["reused"] for m in d2lora) == [False, True, True]
    assert {m["warmup"]["key"] for m in d2lora} == {warmups[0].name}
    # 24 rows in global batches of 4 on both ranks: the steps of one process with the same global batch.
    assert {m["warmup"]["steps"] for m in d2lora} == {6}


def test_one_directory_one_metrics_json_and_one_wandb_run_per_job(two):
    sweep = two / "outputs/sweeps/two"
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "wandb")
    assert runs == sorted(RUNS)
    assert len(list(sweep.glob("wandb/offline-run-*"))) == 1  # the sweep's summary run, by the main rank
    for run in RUNS:
        assert len(list((sweep / run).glob("wandb/offline-run-*"))) == 1, run
        assert not list((sweep / run).glob(".hydra-*"))  # every rank's attempt folder: installed or removed
    warmup_runs = list(sweep.glob("*/wandb-warmup/wandb/offline-run-*"))
    assert len(warmup_runs) == 1  # the warm-up's W&B run, by the run that trained it
    assert not list(two.glob("outputs/runs/*"))  # no rank made a run directory of its own
    progress = json.loads((sweep / ".progress.json").read_text())
    assert (progress["done"], progress["total"]) == (6, 6)  # each job counted once, not once per rank
    assert (sweep / "report.md").is_file()


def test_a_signal_on_one_rank_stops_both_and_the_rerun_resumes_to_the_same_adapter(two, tmp_path):
    """SIGTERM reaches rank 1 alone at the end of adaptation step 1: both ranks save the checkpoint of step 1 and stop;
    the rerun resumes there and ends with the adapter of the run never interrupted (the sweep's lora-sft)."""
    run_dir = tmp_path / "run"
    overrides = [*COMMON, "init=lora", "method=sft", f"hydra.run.dir={run_dir}", "train.checkpoint_every=null"]
    cache = {"D2LORA_CACHE": str(two / "cache")}  # the tiny model and data already built
    stopped = _launch([*TORCHRUN, str(STOPPER), "adapt:1:TERM", *overrides], tmp_path, STOP_RANK="1", **cache)
    assert stopped.returncode != 0
    record = _metrics(run_dir)
    assert record["status"] == "interrupted" and "SIGTERM" in record["error"]
    interrupted_run = record["wandb_run"]["id"]
    marks = list((run_dir / "checkpoints/adapt").glob("checkpoint-1/d2lora_checkpoint.json"))
    assert len(marks) == 1 and json.loads(marks[0].read_text())["world_size"] == 2
    assert sorted(p.name for p in (run_dir / "checkpoints/adapt/checkpoint-1").glob("rng_state*")) == [
        "rng_state_0.pth", "rng_state_1.pth"]
    resumed = _launch([*TORCHRUN, "-m", "d2lora_exp", *overrides], tmp_path, **cache)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    record = _metrics(run_dir)
    assert record["status"] == "complete" and record["adapt"]["resumed_from_step"] == 1
    reference = _metrics(two / "outputs/sweeps/two/lora-sft-math-n8-s0")
    assert record["adapt"]["digest"] == reference["adapt"]["digest"]
    assert record["adapt"]["tokens"] == reference["adapt"]["tokens"]
    assert record["wandb_run"] == {**record["wandb_run"], "id": interrupted_run, "resumed": True}  # one W&B run


def test_an_error_on_one_rank_of_a_sweep_ends_the_launch_instead_of_hanging(tmp_path):
    """Rank 1 alone fails in the first job of a two-job sweep: the launch must end (nonzero), not go on to the next job
    while rank 0 waits in a collective of the failed one (before the fix the job hung until the test's timeout)."""
    sweep = ["-m", "method=sft,orpo", *COMMON, "init=lora", "sweep_name=broken", "train.checkpoint_every=null"]
    start = time.monotonic()
    proc = subprocess.run([*TORCHRUN, str(STOPPER), "adapt:1:RAISE", *sweep], capture_output=True, text=True,
                          env=_env(tmp_path, STOP_RANK="1"), timeout=600)
    assert proc.returncode != 0 and time.monotonic() - start < 500
    said = proc.stdout + proc.stderr
    assert "injected failure at adapt step 1" in said and "so the launcher stops every rank" in said
    runs = tmp_path / "outputs/sweeps/broken"
    assert not (runs / "lora-orpo-math-n8-s0" / "metrics.json").exists()  # the next job never started
    assert _metrics(runs / "lora-sft-math-n8-s0")["status"] != "complete"


def test_accelerate_launch_runs_the_same_ranks(two, tmp_path):
    """`accelerate launch --multi_gpu` starts the ranks through torch's launcher as torchrun does (on CPU too, with
    device=cpu): the same adapter as the torchrun run."""
    run_dir = tmp_path / "run"
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    proc = _launch([*accelerate, "-m", "d2lora_exp", *COMMON, "init=lora", "method=sft", f"hydra.run.dir={run_dir}"],
                   tmp_path, D2LORA_CACHE=str(two / "cache"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = _metrics(run_dir)
    assert record["world_size"] == 2 and record["status"] == "complete"
    assert record["adapt"]["digest"] == _metrics(two / "outputs/sweeps/two/lora-sft-math-n8-s0")["adapt"]["digest"]


# Evaluation alone (data_size=0: the base model), with every kind of evaluator: the harness engine's generation
# (gsm8k) and log-likelihoods (arc_easy), this project's own generation (chat), and a harness task with few-shot
# examples. 9 rows in batches of 4: the ranks get 5 and 4 rows, rank 0 two batches and rank 1 one.
EVALUATORS = ["eval.evaluators=[task,arc_easy,chat]", "eval.limit=9", "eval.batch_size=4", "eval.harness.tasks=[gsm8k]",
              "eval.harness.num_fewshot=2"]
EVAL_RUN = ["experiment=smoke", "device=cpu", "init=lora", "method=sft", "data_size=0", "wandb.mode=offline",
            *EVALUATORS]
# Measured: 3.8e-6 (log-likelihoods near -30: the two ranks' batches hold other rows, so float32 sums round
# differently); everything else, generated text included, is equal.
LOGPROB_TOLERANCE = 1e-4


def _evaluation(root: Path, real_data, cmd: list[str]) -> Path:
    files = (f"eval.harness.data_files={{gsm8k: {{train: {real_data('gsm8k/train.jsonl')}, "
             f"test: {real_data('gsm8k/test.jsonl')}}}}}")
    proc = _launch([*cmd, "-m", "d2lora_exp", *EVAL_RUN, files, f"hydra.run.dir={root / 'run'}"], root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root / "run"


def _predictions(run_dir: Path) -> dict[str, list[dict]]:
    return {p.name: [json.loads(line) for line in p.read_text().splitlines()]
            for p in sorted(run_dir.glob("predictions_*.jsonl"))}


def test_two_ranks_evaluate_half_the_rows_each_and_write_what_one_process_writes(tmp_path, real_data):
    one = _evaluation(tmp_path / "one", real_data, [sys.executable])
    two = _evaluation(tmp_path / "two", real_data, TORCHRUN)
    ours, theirs = _metrics(two), _metrics(one)
    assert ours["metrics"] == theirs["metrics"]
    assert {"eval_n", "arc_n", "chat_n", "harness/gsm8k/n"} <= set(ours["metrics"]) and ours["metrics"]["chat_n"] == 9
    # Each rank computed its share of every evaluator's rows (one process records no shares).
    assert ours["evaluation"]["rows_by_rank"] == {"gsm8k": [5, 4], "arc_easy": [5, 4], "chat": [5, 4], "harness": [5, 4]}
    assert "rows_by_rank" not in theirs["evaluation"] and ours["evaluation"]["key"] == theirs["evaluation"]["key"]
    mine, reference = _predictions(two), _predictions(one)
    assert list(mine) == ["predictions_arc_easy.jsonl", "predictions_chat.jsonl", "predictions_gsm8k.jsonl",
                          "predictions_harness.jsonl"] == list(reference)
    for name, rows in mine.items():  # the same rows in the same order; log-likelihoods within the tolerance
        assert len(rows) == len(reference[name]) > 0
        for row, ref in zip(rows, reference[name]):
            assert {k: v for k, v in row.items() if k != "logprobs"} == {k: v for k, v in ref.items() if k != "logprobs"}
            assert row.get("logprobs", []) == pytest.approx(ref.get("logprobs", []), abs=LOGPROB_TOLERANCE)
    # Few-shot examples are those of one process (the harness's own data-parallel mode draws them per rank).
    assert (two / "predictions_harness.jsonl").read_bytes() == (one / "predictions_harness.jsonl").read_bytes()


# dist=fsdp: the same sweep with the model sharded across the two processes (FSDP2 through the Trainer, gloo on CPU).
# Measured: 0.0 for every method and init, against the one process of the same global batch (the ranks' gradients are
# reduced in another order than DDP's, which on these sizes rounds the same); the DDP tolerance, kept.
FSDP_TOLERANCE = TOLERANCE


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> Path:
    """Every method x (LoRA, D2LoRA), and DPO against the base (adapters off), trained by two processes with FSDP."""
    root = tmp_path_factory.mktemp("sharded")
    for extra in ([*SWEEP, "sweep_name=fsdp"], ["init=d2lora", "method=dpo", "method.reference=base",
                                                f"hydra.run.dir={root / 'refbase'}"]):
        proc = _launch([*TORCHRUN, "-m", "d2lora_exp", *extra, *COMMON, "dist=fsdp"], root)
        assert proc.returncode == 0, proc.stderr[-4000:]
    return root


def _dpo_against_the_base_by_one_process(one: Path) -> Path:
    """The one-process reference of `sharded`'s DPO-against-the-base run, in `one`'s sweep (its warm-up is cached)."""
    run = one / "refbase"
    if not (run / "metrics.json").is_file():
        proc = _launch([sys.executable, "-m", "d2lora_exp", *COMMON, "init=d2lora", "method=dpo", "method.reference=base",
                        "train.gradient_accumulation_steps=2", "method.precompute_ref=false", f"hydra.run.dir={run}"], one)
        assert proc.returncode == 0, proc.stderr[-4000:]
    return run


@pytest.mark.parametrize("run", [*RUNS, "d2lora-dpo-math-n8-s0[ref=base]"])
def test_fsdp_trains_the_adapter_of_one_process_with_the_same_global_batch(sharded, one, run):
    if run.endswith("[ref=base]"):
        mine, ref = sharded / "refbase", _dpo_against_the_base_by_one_process(one)
    else:
        mine, ref = sharded / "outputs/sweeps/fsdp" / run, one / "outputs/sweeps/one" / run
    ours, theirs = _metrics(mine), _metrics(ref)
    assert ours["status"] == theirs["status"] == "complete"
    assert ours["dpo_reference"] == theirs["dpo_reference"] == ("base" if "ref=base" in run else ours["dpo_reference"])
    assert (ours["world_size"], theirs["world_size"]) == (2, 1)
    assert (ours["adapt"]["sharded"], theirs["adapt"]["sharded"]) == (True, False)  # FSDP did shard, not DDP
    trained = _adapter(mine / "adapter")
    assert _max_diff(trained, _adapter(ref / "adapter")) <= FSDP_TOLERANCE
    assert max(float(t.abs().max()) for k, t in trained.items() if "lora_B" in k) > 1e3 * FSDP_TOLERANCE
    assert ours["metrics"] == theirs["metrics"]  # evaluated on the saved adapter, split across the ranks
    if "ref=base" in run:  # the reference mattered: against the warm-up adapter (`ref` copy) DPO trains another one
        other = _adapter(sharded / "outputs/sweeps/fsdp/d2lora-dpo-math-n8-s0/adapter")
        assert _max_diff(trained, other) > 1e3 * FSDP_TOLERANCE


def test_fsdp_saves_an_adapter_that_loads_on_a_clean_model(sharded):
    """The adapter rank 0 saved (gathered from the shards) is a whole PEFT adapter: it loads on a clean base."""
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    run = sharded / "outputs/sweeps/fsdp/d2lora-orpo-math-n8-s0"
    base = AutoModelForCausalLM.from_pretrained(sharded / "cache/models/tiny-llama-v1")
    loaded = get_peft_model_state_dict(PeftModel.from_pretrained(base, run / "adapter"))
    assert _max_diff(loaded, _adapter(run / "adapter")) == 0.0


def test_fsdp_shares_one_warmup_trained_sharded(sharded, one):
    warmups = [p for p in (sharded / "cache/warmups").iterdir() if p.is_dir()]
    assert len(warmups) == 1 and (warmups[0] / MARKER).is_file()
    reference = next(p for p in (one / "cache/warmups").iterdir() if p.is_dir())
    assert _max_diff(_adapter(warmups[0]), _adapter(reference)) <= FSDP_TOLERANCE
    d2lora = [_metrics(p) for p in (sharded / "outputs/sweeps/fsdp").iterdir() if p.name.startswith("d2lora-")]
    assert sorted(m["warmup"]["reused"] for m in d2lora) == [False, True, True]
    assert [m["warmup"]["sharded"] for m in d2lora if not m["warmup"]["reused"]] == [True]
    assert _metrics(sharded / "refbase")["warmup"]["reused"] is True
    assert len(list((sharded / "outputs/sweeps/fsdp").glob("*/metrics.json"))) == 6  # one per run, not per rank
    assert not list(sharded.glob("outputs/runs/*"))  # no rank made a run directory of its own


# Stopped mid-phase under FSDP, then rerun: (init, method, where the stop comes). 8 task rows, 24 warm-up rows in global
# batches of 4: 2 adaptation steps and 6 warm-up steps.
FSDP_STOPS = [("lora", "sft", "adapt:1"), ("lora", "dpo", "adapt:1"), ("lora", "orpo", "adapt:1"),
              ("d2lora", "sft", "warmup:3")]
# The checkpoint of a sharded run: what one process writes (PEFT's adapter, the optimizer gathered whole, the
# scheduler, the trainer state), each rank's RNG state, and the mark.
FSDP_CHECKPOINT_FILES = {"adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt",
                         "trainer_state.json", "training_args.bin", "rng_state_0.pth", "rng_state_1.pth",
                         "d2lora_checkpoint.json"}


def _fresh_cache(sharded: Path, into: Path) -> Path:
    """`sharded`'s cache (the tiny model and data) without its warm-up, so that a run trains the warm-up again."""
    import shutil

    shutil.copytree(sharded / "cache", into, ignore=shutil.ignore_patterns("warmups", "checkpoints", "evaluations"))
    return into


@pytest.mark.parametrize("init, method, stop", FSDP_STOPS)
def test_fsdp_a_signal_on_one_rank_checkpoints_the_shards_and_the_rerun_resumes_to_the_same_adapter(
        sharded, tmp_path, init, method, stop):
    """SIGTERM reaches rank 1 alone mid-phase of an FSDP run with periodic checkpoints: both ranks gather the shards
    into one checkpoint (written by rank 0) and stop; the rerun resumes there (resumed_from_step > 0) and ends with
    the adapter of the FSDP run never interrupted (`sharded`'s), bit for bit (same file digest)."""
    phase, step = stop.split(":")
    run_dir = tmp_path / "run"
    overrides = [*COMMON, "dist=fsdp", f"init={init}", f"method={method}", f"hydra.run.dir={run_dir}",
                 "train.checkpoint_every=1steps"]
    cache = _fresh_cache(sharded, tmp_path / "cache") if phase == "warmup" else sharded / "cache"
    env = {"D2LORA_CACHE": str(cache)}
    stopped = _launch([*TORCHRUN, str(STOPPER), f"{stop}:TERM", *overrides], tmp_path, STOP_RANK="1", **env)
    assert stopped.returncode != 0
    record = _metrics(run_dir)
    assert record["status"] == "interrupted" and "SIGTERM" in record["error"]
    assert f"in the {phase} phase at step {step}, after saving a checkpoint" in record["error"]
    where = run_dir / "checkpoints/adapt" if phase == "adapt" else next((cache / "checkpoints").iterdir())
    # Every step's (checkpoint_keep=2: the one before and the stop's own, which is the periodic one of its step).
    kept = sorted(p.name for p in where.glob("checkpoint-*"))
    assert kept == [f"checkpoint-{n}" for n in range(max(1, int(step) - 1), int(step) + 1)]
    checkpoint = where / kept[-1]
    assert {p.name for p in checkpoint.iterdir()} >= FSDP_CHECKPOINT_FILES
    assert json.loads((checkpoint / "d2lora_checkpoint.json").read_text())["world_size"] == 2
    assert not list(checkpoint.glob("*fsdp*"))  # not the Trainer's own FSDP files (the whole base gathered)
    resumed = _launch([*TORCHRUN, "-m", "d2lora_exp", *overrides], tmp_path, **env)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"{phase}: resuming from step {step}" in resumed.stdout + resumed.stderr
    record = _metrics(run_dir)
    reference = _metrics(sharded / f"outputs/sweeps/fsdp/{init}-{method}-math-n8-s0")
    assert record["status"] == "complete" and record[phase]["sharded"] is True
    if phase == "adapt":
        assert record["adapt"]["resumed_from_step"] == int(step)
    else:
        assert record["warmup"]["reused"] is False and record["warmup"]["digest"] == reference["warmup"]["digest"]
    assert record["adapt"]["digest"] == reference["adapt"]["digest"]
    assert record[phase]["tokens"] == reference[phase]["tokens"]
    assert record[phase]["train_loss"] == pytest.approx(reference[phase]["train_loss"], rel=1e-9)
    assert not where.exists()  # removed once the phase's result is saved


def test_a_ddp_checkpoint_is_not_resumed_by_an_fsdp_rerun(sharded, tmp_path):
    """The two checkpoint layouts do not mix: a DDP run stopped with a checkpoint and rerun with dist=fsdp (same config
    hash) starts the phase again instead of loading an optimizer keyed by index into FSDP's by-name load, and still ends
    with the FSDP adapter."""
    run_dir = tmp_path / "run"
    overrides = [*COMMON, "init=lora", "method=sft", f"hydra.run.dir={run_dir}", "train.checkpoint_every=1steps"]
    env = {"D2LORA_CACHE": str(sharded / "cache")}
    stopped = _launch([*TORCHRUN, str(STOPPER), "adapt:1:TERM", *overrides], tmp_path, STOP_RANK="1", **env)
    assert stopped.returncode != 0 and list((run_dir / "checkpoints/adapt").glob("checkpoint-1"))
    rerun = _launch([*TORCHRUN, "-m", "d2lora_exp", *overrides, "dist=fsdp"], tmp_path, **env)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    record, reference = _metrics(run_dir), _metrics(sharded / "outputs/sweeps/fsdp/lora-sft-math-n8-s0")
    assert record["status"] == "complete" and record["adapt"]["sharded"] is True
    assert not record["adapt"].get("resumed_from_step")  # the DDP checkpoint was not taken
    assert record["adapt"]["digest"] == reference["adapt"]["digest"]
