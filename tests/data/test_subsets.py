from datasets import Dataset

from d2lora_exp.data.subsets import nested_subset


def _pool(n: int = 500) -> Dataset:
    return Dataset.from_dict({"i": list(range(n))})


def test_subsets_are_nested_and_deterministic():
    pool = _pool()
    small, h_small = nested_subset(pool, 100, seed=7)
    large, h_large = nested_subset(pool, 250, seed=7)
    again, h_again = nested_subset(pool, 100, seed=7)
    assert small["i"] == large["i"][:100]
    assert set(small["i"]) < set(large["i"])
    assert small["i"] == again["i"] and h_small == h_again
    assert h_small != h_large


def test_subset_is_a_shuffle_and_depends_on_its_seed():
    pool = _pool()
    a, _ = nested_subset(pool, 100, seed=1)
    b, _ = nested_subset(pool, 100, seed=2)
    assert a["i"] != list(range(100))
    assert a["i"] != b["i"]
    assert len(set(a["i"])) == 100


def test_zero_rows():
    subset, _ = nested_subset(_pool(), 0, seed=0)
    assert len(subset) == 0
