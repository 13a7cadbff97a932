"""The bundled datasets: committed bytes == generator output, and each file has the real schema."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from d2lora_exp.bundled import DATA_DIR, FILES
from d2lora_exp.bundled import generate

MESSAGES = "messages"  # marker: a list of {"content": str, "role": str}

# Columns (in order) and value types of the real hub datasets each file stands in for.
SCHEMAS: dict[str, dict[str, object]] = {
    # mlabonne/orpo-dpo-mix-40k
    "orpo_dpo_mix.jsonl": {"source": str, "chosen": MESSAGES, "rejected": MESSAGES, "prompt": str, "question": str},
    # xinlai/Math-Step-DPO-10K
    "math_step_dpo.jsonl": {c: str for c in ("dataset", "prompt", "initial_reason_steps", "chosen", "rejected",
                                             "full_chosen", "full_rejected", "answer")},
    # openai/gsm8k, main
    "gsm8k_test.jsonl": {"question": str, "answer": str},
    # onurkeles/econ_paper_abstracts
    "econ_titles.csv": {"title": str, "abstract": str},
    # allenai/ai2_arc, ARC-Easy
    "arc_easy_test.jsonl": {"id": str, "question": str, "choices": {"text": list, "label": list}, "answerKey": str},
}
ROWS = {"orpo_dpo_mix.jsonl": 240, "math_step_dpo.jsonl": 1200, "gsm8k_test.jsonl": 64, "econ_titles.csv": 400,
        "arc_easy_test.jsonl": 64}

ANSWER_RE = re.compile(r"The answer is: (-?\d+)$")


def _read(path: Path) -> tuple[list[str], list[dict]]:
    """(column names in file order, rows) of a JSONL or CSV file."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return list(rows[0]), rows


@pytest.fixture(scope="module")
def data() -> dict[str, list[dict]]:
    return {name: _read(DATA_DIR / name)[1] for name in FILES}


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundled")
    assert generate.main(["--out", str(out), "--seed", "0"]) == 0
    return out


def test_files_listed_and_small():
    assert set(FILES) == set(SCHEMAS)
    assert sum((DATA_DIR / name).stat().st_size for name in FILES) < 2_000_000


@pytest.mark.parametrize("name", FILES)
def test_committed_files_match_generator(name, regenerated):
    committed = DATA_DIR / name
    assert committed.is_file(), f"{committed} missing: run python -m d2lora_exp.bundled.generate"
    assert (regenerated / name).read_bytes() == committed.read_bytes(), (
        f"{name} differs from the generator output; regenerate with python -m d2lora_exp.bundled.generate")


def test_generation_is_deterministic_and_seeded():
    again = generate.build(0)
    assert again == generate.build(0)
    other = generate.build(1)
    assert set(other) == set(again)
    for name in again:
        assert other[name] != again[name], name


@pytest.mark.parametrize("name", FILES)
def test_schema(name):
    path = DATA_DIR / name
    raw = path.read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    columns, rows = _read(path)
    schema = SCHEMAS[name]
    assert columns == list(schema)
    assert len(rows) == ROWS[name]
    for row in rows:
        assert list(row) == list(schema)
        for col, kind in schema.items():
            value = row[col]
            if kind is MESSAGES:
                assert isinstance(value, list) and value
                for m in value:
                    assert list(m) == ["content", "role"] and all(isinstance(v, str) for v in m.values())
            elif isinstance(kind, dict):
                assert isinstance(value, dict) and list(value) == list(kind)
                assert all(isinstance(value[k], t) for k, t in kind.items())
            else:
                assert isinstance(value, kind), (col, value)
                assert value != "" or col == "initial_reason_steps", col  # k = 0 steps before the pair


def test_orpo_rows(data):
    rows = data["orpo_dpo_mix.jsonl"]
    assert sum(r["source"] == "toxic-dpo-v0.2" for r in rows) >= 1
    assert len({r["source"] for r in rows}) >= 4
    for r in rows:
        chosen, rejected = r["chosen"], r["rejected"]
        assert chosen[-1]["role"] == rejected[-1]["role"] == "assistant"
        assert chosen[:-1] == rejected[:-1]  # same conversation, different final reply
        assert chosen[-1]["content"] != rejected[-1]["content"]
        users = [m["content"] for m in chosen if m["role"] == "user"]
        assert users and r["prompt"] == r["question"] == users[0]
        assert {m["role"] for m in chosen} <= {"system", "user", "assistant"}
    assert any(r["chosen"][0]["role"] == "system" for r in rows)
    assert any(sum(m["role"] == "user" for m in r["chosen"]) == 2 for r in rows)


def test_math_rows(data):
    rows = data["math_step_dpo.jsonl"]
    assert len({r["prompt"] for r in rows}) == len(rows)
    for r in rows:
        right = ANSWER_RE.search(r["full_chosen"])
        wrong = ANSWER_RE.search(r["full_rejected"])
        assert right and wrong
        assert r["answer"] == right.group(1) != wrong.group(1)
        assert r["full_chosen"].startswith(r["chosen"]) and r["full_rejected"].startswith(r["rejected"])
        assert r["chosen"] != r["rejected"]
        assert r["prompt"].startswith("### Instruction:\n") and r["prompt"].endswith("Let's think step by step.")
        k = r["initial_reason_steps"].count("Step ")
        assert r["chosen"].startswith(f"Step {k + 1}: ") and r["rejected"].startswith(f"Step {k + 1}: ")
    assert {r["dataset"] for r in rows} == {"gsm8k", "MATH"}


def test_gsm8k_rows(data):
    for r in data["gsm8k_test.jsonl"]:
        assert re.search(r"\n#### \d+$", r["answer"]), r["answer"]
        assert "<<" in r["answer"]


def test_gsm8k_disjoint_from_math_training(data):
    prompts = [r["prompt"] for r in data["math_step_dpo.jsonl"]]
    questions = [r["question"] for r in data["gsm8k_test.jsonl"]]
    assert len(set(questions)) == len(questions)
    for q in questions:
        assert not any(q in p for p in prompts), q


def test_arc_rows(data):
    rows = data["arc_easy_test.jsonl"]
    assert len({r["id"] for r in rows}) == len(rows)
    sizes = set()
    for r in rows:
        text, label = r["choices"]["text"], r["choices"]["label"]
        assert len(text) == len(label) and len(set(text)) == len(text)
        assert label in (list("ABCDE"[: len(label)]), [str(i + 1) for i in range(len(label))])
        assert r["answerKey"] in label
        sizes.add(len(label))
    assert sizes == {3, 4, 5}
    assert any(r["choices"]["label"][0] == "1" for r in rows)


def test_econ_rows(data):
    rows = data["econ_titles.csv"]
    assert len({r["title"] for r in rows}) == len(rows)
    for r in rows:
        assert 3 <= len(re.split(r"(?<=[.?]) ", r["abstract"])) <= 5, r["abstract"]


def test_loadable_with_datasets(tmp_path):
    """The project reads these files with `datasets` (json/csv builders); check they parse as expected."""
    datasets = pytest.importorskip("datasets")
    for name in FILES:
        builder = "csv" if name.endswith(".csv") else "json"
        ds = datasets.load_dataset(builder, data_files=str(DATA_DIR / name), split="train",
                                   cache_dir=str(tmp_path / "cache"))
        assert ds.column_names == list(SCHEMAS[name]) and len(ds) == ROWS[name]
