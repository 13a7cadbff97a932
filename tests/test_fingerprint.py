"""The one stable hash: independent of key order and of where a local data file lives, sensitive to its bytes."""

from __future__ import annotations

from d2lora_exp.fingerprint import content_config, data_identity, stable_hash


def test_stable_hash_ignores_key_order_but_not_values():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1, "b": [1, 2]}) != stable_hash({"a": 1, "b": [2, 1]})
    assert len(stable_hash({})) == 16


def test_a_local_file_counts_by_its_bytes_and_a_hub_dataset_by_its_id(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "copy" / "b.jsonl"
    b.parent.mkdir()
    a.write_text('{"x": 1}\n')
    b.write_text('{"x": 1}\n')
    assert data_identity({"path": str(a), "split": "train"}) == data_identity({"path": str(b), "split": "train"})
    b.write_text('{"x": 2}\n')
    assert data_identity({"path": str(a)}) != data_identity({"path": str(b)})
    hub = {"path": "openai/gsm8k", "name": "main", "split": "test"}
    assert data_identity(hub) == hub
    nested = content_config({"eval": {"data": {"path": str(a)}, "limit": 5}, "xs": [{"path": str(a)}]})
    assert nested["eval"]["data"]["content_sha256"] == nested["xs"][0]["content_sha256"] and nested["eval"]["limit"] == 5
