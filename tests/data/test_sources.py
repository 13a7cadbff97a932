import json

import pytest
from datasets import Dataset

from d2lora_exp.data import sources
from d2lora_exp.errors import UserError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_loads_jsonl_csv_parquet(tmp_path):
    rows = [{"question": "q1", "answer": "a #### 1"}, {"question": "q2", "answer": "b #### 2"}]
    _jsonl(tmp_path / "d.jsonl", rows)
    Dataset.from_list(rows).to_csv(str(tmp_path / "d.csv"), index=False)
    Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    for name in ("d.jsonl", "d.csv", "d.parquet"):
        ds = sources.load({"path": str(tmp_path / name)}, "test data")
        assert ds["question"] == ["q1", "q2"]


def test_real_gsm8k_file_passes_the_schema_check(real_data):
    path = real_data("gsm8k/test.jsonl")
    ds = sources.load({"path": str(path)}, "GSM8K")
    sources.require_columns(ds, {"question": str, "answer": str}, "GSM8K")
    assert len(ds) == 1319


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        sources.load({"path": str(tmp_path / "nope.jsonl")}, "test data")


def test_empty_file_is_an_error(tmp_path):
    (tmp_path / "empty.csv").write_text("question,answer\n")
    with pytest.raises(UserError, match="no rows"):
        sources.load({"path": str(tmp_path / "empty.csv")}, "test data")


def test_missing_column_lists_what_is_there(tmp_path):
    ds = sources.load({"path": str(_jsonl(tmp_path / "d.jsonl", [{"question": "q"}]))}, "GSM8K")
    with pytest.raises(UserError, match=r"missing column\(s\) \['answer'\].*\['question'\]"):
        sources.require_columns(ds, {"question": str, "answer": str}, "GSM8K")


def test_wrong_type_is_an_error(tmp_path):
    ds = sources.load({"path": str(_jsonl(tmp_path / "d.jsonl", [{"chosen": "not a chat"}]))}, "warm-up")
    with pytest.raises(UserError, match=r"row 0 column 'chosen' is str \('not a chat'\) where list is expected"):
        sources.require_columns(ds, {"chosen": list}, "warm-up")


def test_every_row_is_type_checked_not_only_the_first(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(5)]
    rows[3]["answer"] = None
    ds = sources.load({"path": str(_jsonl(tmp_path / "d.jsonl", rows))}, "GSM8K")
    with pytest.raises(UserError, match=r"GSM8K: row 3 column 'answer' is NoneType \(None\) where str is expected"):
        sources.require_columns(ds, {"question": str, "answer": str}, "GSM8K")


def test_empty_and_non_utf8_files_are_named_in_one_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match=r"empty.jsonl is empty \(0 bytes\)"):
        sources.load({"path": str(empty)}, "test data")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"question": "ok", "answer": "1"}\n{"question": "caf\xe9", "answer": "2"}\n')
    with pytest.raises(UserError, match=r"latin.jsonl is not UTF-8 \(byte 0xe9 on line 2\); re-encode it"):
        sources.load({"path": str(latin)}, "test data")


@pytest.mark.parametrize("n", [-1, 3])
def test_size_checks(n):
    with pytest.raises(UserError, match="data_size"):
        sources.require_size(n, [1, 2], "pool")
