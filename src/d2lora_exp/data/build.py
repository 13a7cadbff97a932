"""Data sets the project generates itself (the miniature world), written on first use into the cache.

Generated data is a `build_once` entry: built once per directory under a file lock, renamed into place
when complete, so concurrent sweep jobs never see half-written files. Its stamp records what
determines every byte (the generator's source, the seed, the sizes of every file): data written by
an older generator, or at other sizes, is rebuilt, never silently reused, and an edited or truncated
file fails its recorded digest and is rebuilt too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..build_once import Built, build_once
from ..errors import UserError
from ..fingerprint import file_sha256, stable_hash

BUILDERS = ("miniature",)


def generator_digest() -> str:
    """The miniature world generator's source (and the JSONL writer it uses), hashed: what determines every byte."""
    from .. import files
    from ..miniature import chains, world

    return stable_hash([file_sha256(world.__file__), file_sha256(chains.__file__), file_sha256(files.__file__)])


def sizes(build_cfg: Any) -> dict[str, int]:
    """Rows of every file: `build.sizes` over the generator's defaults (absent or {} = the full world)."""
    from ..miniature import world

    given = build_cfg.get("sizes") or {}
    given = OmegaConf.to_container(given, resolve=True) if OmegaConf.is_config(given) else dict(given)
    unknown = sorted(set(given) - set(world.DEFAULT_SIZES))
    if unknown:
        raise UserError(f"unknown data.build.sizes {unknown}; choose from {sorted(world.DEFAULT_SIZES)}.")
    bad = {k: v for k, v in given.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1}
    if bad:
        raise UserError(f"data.build.sizes {bad}: every size must be an integer >= 1.")
    return {**world.DEFAULT_SIZES, **given}


def version(build_cfg: Any) -> int:
    """The world's version (`build.world`, default 3: the world every documented result up to v5 used)."""
    from ..miniature import world

    given = build_cfg.get("world", 3)
    if isinstance(given, bool) or given not in world.VERSIONS:
        raise UserError(f"data.build.world={given!r}: choose one of {list(world.VERSIONS)}.")
    return int(given)


def stamp(build_cfg: Any) -> str:
    """What the entry is: two builds with the same stamp write the same bytes."""
    return json.dumps({"builder": build_cfg.kind, "generator": generator_digest(), "seed": int(build_cfg.seed),
                       "world": version(build_cfg), "sizes": sizes(build_cfg)}, sort_keys=True)


def ensure(data_cfg: Any) -> Built | None:
    """Write the generated data of `data_cfg.build` into `build.dir` unless a current copy is there."""
    build = data_cfg.get("build")
    if not build:
        return None
    if build.kind not in BUILDERS:
        raise UserError(f"unknown data.build.kind={build.kind!r}; choose one of {list(BUILDERS)}.")
    from ..miniature import world

    seed, rows, v = int(build.seed), sizes(build), version(build)

    def write(tmp: Path) -> None:  # the paths write_all returns are the temporary dir's: not kept
        world.write_all(tmp, seed=seed, sizes=rows, version=v)

    return build_once(Path(build.dir), stamp(build), write)
