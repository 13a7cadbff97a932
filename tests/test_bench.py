"""The benchmark script keeps working on CPU (the tiny model); the real numbers come from a GPU run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
def test_bench_smoke_prints_and_writes_every_measurement(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    rows = results["train"]
    assert {(r["method"], r["impl"]) for r in rows} == {(m, i) for m in ("sft", "dpo", "orpo")
                                                        for i in ("plain_trl", "d2lora_exp")}
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["step_s"] > 0 and r["ratio_vs_plain_trl"] > 0
    for method in ("sft", "dpo", "orpo"):
        assert f"{method:5s} d2lora_exp / plain TRL =" in proc.stdout
    (ev,) = results["eval"]
    assert ev["questions"] == 8 and ev["questions_per_s"] > 0 and ev["one_by_one_s_extrapolated"] > 0
    assert results["env"]["trl"] and "eval:" in proc.stdout
