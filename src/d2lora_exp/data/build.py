"""Data sets the project generates itself (the miniature world), written on first use into the cache.

Like the embedded model, generated data is built once per cache directory under a file lock and
renamed into place when complete, so concurrent sweep jobs never see half-written files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..errors import UserError

BUILDERS = ("miniature",)


def ensure(data_cfg: Any) -> None:
    build = data_cfg.get("build")
    if not build:
        return
    if build.kind not in BUILDERS:
        raise UserError(f"unknown data.build.kind={build.kind!r}; choose one of {list(BUILDERS)}.")
    target = Path(build.dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "COMPLETE").is_file():
            return
        from ..miniature import world

        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        try:
            world.write_all(tmp, seed=int(build.seed))
            (tmp / "COMPLETE").write_text("ok\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
