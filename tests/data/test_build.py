"""Generated data (the miniature world) is built once per cache dir, and rebuilt when its generator changed."""

from __future__ import annotations

from omegaconf import OmegaConf

from d2lora_exp.data import build


def test_built_once_and_rebuilt_after_a_generator_change(tmp_path):
    cfg = OmegaConf.create({"build": {"kind": "miniature", "seed": 0, "dir": str(tmp_path / "world")}})
    build.ensure(cfg)
    math = tmp_path / "world" / "math_step_dpo.jsonl"
    first = math.stat().st_mtime_ns
    assert (tmp_path / "world" / "COMPLETE").read_text() == f"generator {build.generator_digest()}\n"
    build.ensure(cfg)
    assert math.stat().st_mtime_ns == first  # complete and current: reused
    (tmp_path / "world" / "COMPLETE").write_text("generator 0123456789abcdef\n")  # written by an older generator
    math.write_text("stale\n")
    build.ensure(cfg)
    assert math.read_text() != "stale\n" and (tmp_path / "world" / "COMPLETE").read_text().endswith(
        f"{build.generator_digest()}\n")
