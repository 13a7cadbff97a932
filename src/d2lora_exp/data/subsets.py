"""Nested, deterministic training subsets for learning curves.

One seeded permutation per pool; data_size=n takes its first n rows, so the 1k set lies inside the
2k set, and the subset does not move with the training seed (seed=0,1,2 varies training only).
"""

from __future__ import annotations

import hashlib

import numpy as np
from datasets import Dataset


def permutation(pool_size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(pool_size)


def nested_subset(pool: Dataset, n: int, seed: int) -> tuple[Dataset, str]:
    """First n rows of the pool's seeded permutation, and a short hash of the chosen indices."""
    indices = permutation(len(pool), seed)[:n]
    digest = hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]
    return pool.select(indices.tolist()), digest
