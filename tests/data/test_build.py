"""Generated data (the miniature world) is built once per cache dir, and rebuilt when its generator, its
seed or its sizes changed or a file was tampered with."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from d2lora_exp.build_once import MARKER
from d2lora_exp.data import build
from d2lora_exp.errors import UserError

SIZES = {"corpus": 20, "warmup": 30, "chat_test": 10, "math_train": 40, "math_validation": 10, "gsm8k_test": 10,
         "titles": 20, "arc": 10}


def _cfg(tmp_path, **sizes):
    return OmegaConf.create({"build": {"kind": "miniature", "seed": 0, "dir": str(tmp_path / "world"),
                                       "sizes": {**SIZES, **sizes}}})


def _rows(path) -> int:
    return len(path.read_text().splitlines())


def test_built_once_reused_when_current_rebuilt_after_a_generator_change(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    first = build.ensure(cfg)
    math = tmp_path / "world" / "math_step_dpo.jsonl"
    assert not first.reused and _rows(math) == SIZES["math_train"]
    recorded = json.loads((tmp_path / "world" / MARKER).read_text())
    assert json.loads(recorded["stamp"]) == {"builder": "miniature", "generator": build.generator_digest(), "seed": 0,
                                             "world": 3, "sizes": SIZES}
    assert set(recorded["files"]) == {p.name for p in (tmp_path / "world").iterdir()} - {MARKER}
    mtime = math.stat().st_mtime_ns
    assert build.ensure(cfg).reused and math.stat().st_mtime_ns == mtime  # complete and current: reused
    monkeypatch.setattr(build, "generator_digest", lambda: "0123456789abcdef")  # the generator's source changed
    assert not build.ensure(cfg).reused
    assert json.loads(json.loads((tmp_path / "world" / MARKER).read_text())["stamp"])["generator"] == "0123456789abcdef"


def test_tampered_or_truncated_file_is_rebuilt(tmp_path):
    cfg = _cfg(tmp_path)
    build.ensure(cfg)
    math = tmp_path / "world" / "math_step_dpo.jsonl"
    good = math.read_bytes()
    math.write_text("stale\n")
    assert not build.ensure(cfg).reused and math.read_bytes() == good
    math.write_bytes(good[: len(good) // 2])
    assert not build.ensure(cfg).reused and math.read_bytes() == good
    (tmp_path / "world" / "extra.jsonl").write_text("{}\n")  # a file the build did not write
    assert not build.ensure(cfg).reused and not (tmp_path / "world" / "extra.jsonl").exists()


def test_other_sizes_or_seed_rebuild_and_an_old_marker_is_not_trusted(tmp_path):
    build.ensure(_cfg(tmp_path))
    bigger = _cfg(tmp_path, math_train=60)
    assert not build.ensure(bigger).reused and _rows(tmp_path / "world" / "math_step_dpo.jsonl") == 60
    assert build.stamp(bigger.build) != build.stamp(_cfg(tmp_path).build)
    reseeded = _cfg(tmp_path, math_train=60)
    reseeded.build.seed = 1
    assert not build.ensure(reseeded).reused
    # A dir finished by the previous builder (a bare COMPLETE file, no digests) is rebuilt whole.
    old = tmp_path / "old"
    old.mkdir()
    (old / "COMPLETE").write_text(f"generator {build.generator_digest()}\n")
    (old / "math_step_dpo.jsonl").write_text("stale\n")
    cfg = _cfg(tmp_path)
    cfg.build.dir = str(old)
    assert not build.ensure(cfg).reused
    assert not (old / "COMPLETE").exists() and _rows(old / "math_step_dpo.jsonl") == SIZES["math_train"]


def test_absent_sizes_mean_the_full_world_and_bad_sizes_are_user_errors(tmp_path):
    from d2lora_exp.miniature import world

    full = OmegaConf.create({"kind": "miniature", "seed": 0, "dir": "x"})
    assert build.sizes(full) == world.DEFAULT_SIZES == build.sizes(OmegaConf.merge(full, {"sizes": {}}))
    assert build.stamp(full) == build.stamp(OmegaConf.merge(full, {"sizes": dict(world.DEFAULT_SIZES)}))
    with pytest.raises(UserError, match=r"unknown data.build.sizes \['math'\]"):
        build.ensure(_cfg(tmp_path, math=5))
    with pytest.raises(UserError, match="integer >= 1"):
        build.ensure(_cfg(tmp_path, titles=0))
    assert not (tmp_path / "world").exists()


def test_smoke_and_full_world_use_different_dirs():
    from d2lora_exp.config import config_dir

    smoke, full = (OmegaConf.to_container(OmegaConf.load(config_dir() / "data" / f"{name}.yaml"))["build"]
                   for name in ("smoke", "miniature"))
    assert smoke["dir"] != full["dir"] and smoke["sizes"] and "sizes" not in full


def test_the_world_version_is_part_of_what_a_build_is(tmp_path):
    """data.build.world=5 writes world v5's problems; a dir built for another version is rebuilt, never reused."""
    v3 = _cfg(tmp_path)
    build.ensure(v3)
    v5 = OmegaConf.merge(v3, {"build": {"world": 5}})
    assert not build.ensure(v5).reused
    row = json.loads((tmp_path / "world" / "math_step_dpo.jsonl").read_text().splitlines()[0])
    assert json.loads(json.loads((tmp_path / "world" / MARKER).read_text())["stamp"])["world"] == 5
    step = (row["initial_reason_steps"] + row["full_chosen"]).splitlines()[0]
    assert step.split(": ")[1] in row["prompt"]  # v5's steps quote the question
    assert build.ensure(v5).reused and not build.ensure(v3).reused
    with pytest.raises(UserError, match=r"data.build.world=True: choose one of \[3, 5\]"):
        build.ensure(OmegaConf.merge(v3, {"build": {"world": True}}))
