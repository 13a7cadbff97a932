"""build_once: one build under concurrency, nothing finished-looking after a crash, damaged entries rebuilt."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from d2lora_exp.build_once import MARKER, build_once


def _writer(calls: list, text: str = "weights"):
    def build(tmp: Path) -> str:
        calls.append(tmp)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.bin").write_text(text)
        (tmp / "record.json").write_text(json.dumps({"text": text}))
        return text
    return build


def test_built_once_then_reused_with_the_digest_of_every_file(tmp_path):
    calls: list = []
    first = build_once(tmp_path / "entry", "key-1", _writer(calls))
    assert (first.reused, first.value) == (False, "weights") and len(calls) == 1
    marker = json.loads((tmp_path / "entry" / MARKER).read_text())
    assert marker["stamp"] == "key-1" and set(marker["files"]) == {"sub/a.bin", "record.json"}
    again = build_once(tmp_path / "entry", "key-1", _writer(calls))
    assert (again.reused, again.value, len(calls)) == (True, None, 1)
    assert not list(tmp_path.glob("entry.tmp-*"))


@pytest.mark.parametrize("damage", ["truncate", "delete", "edit_marker", "other_stamp"])
def test_a_damaged_or_outdated_entry_is_rebuilt_not_reused(tmp_path, damage):
    calls: list = []
    build_once(tmp_path / "entry", "key-1", _writer(calls))
    target = tmp_path / "entry" / "sub" / "a.bin"
    stamp = "key-1"
    if damage == "truncate":
        target.write_text("wei")
    elif damage == "delete":
        target.unlink()
    elif damage == "edit_marker":
        (tmp_path / "entry" / MARKER).write_text("{not json")
    else:
        stamp = "key-2"
    rebuilt = build_once(tmp_path / "entry", stamp, _writer(calls, "fresh"))
    assert not rebuilt.reused and len(calls) == 2 and target.read_text() == "fresh"


def test_a_failed_build_leaves_nothing_that_looks_finished(tmp_path):
    def crash(tmp: Path) -> None:
        (tmp / "half.bin").write_text("half")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError, match="killed mid-build"):
        build_once(tmp_path / "entry", "k", crash)
    assert not (tmp_path / "entry").exists() and not list(tmp_path.glob("entry.tmp-*"))
    (tmp_path / "entry.tmp-left-by-a-SIGKILL").mkdir()  # what a killed process leaves behind
    calls: list = []
    assert not build_once(tmp_path / "entry", "k", _writer(calls)).reused
    assert not list(tmp_path.glob("entry.tmp-*"))


def test_concurrent_builders_build_once(tmp_path):
    calls: list = []

    def slow(tmp: Path) -> str:
        time.sleep(0.3)
        return _writer(calls)(tmp)

    results: list = []
    threads = [threading.Thread(target=lambda: results.append(build_once(tmp_path / "entry", "k", slow)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(r.reused for r in results) == [False, True, True]
