"""Tiny synthetic catalogs, features and batches for the model tests (no files, no Ray).

Imported by name (pytest puts this directory on sys.path): `from model_testkit import ...`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semacdr_dist.data.batch import collate_rows
from semacdr_dist.data.catalog import Catalog
from semacdr_dist.model.config import ModelConfig

N_ITEMS = 120  # items 0..59 in domain "a", 60..119 in domain "b"
FEATURE_DIM = 16


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(N_ITEMS, ["a", "b"], (np.arange(N_ITEMS) >= N_ITEMS // 2).astype(np.int8))


@pytest.fixture
def features() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {v: rng.normal(size=(N_ITEMS, FEATURE_DIM)).astype(np.float32)
            for v in ("content", "specific", "agnostic")}


def make_rows(catalog: Catalog, n: int, seed: int = 0, max_hist: int = 12) -> list[dict]:
    """`n` SEQUENCES-like rows: mixed histories, target domain alternating; every 4th row
    has no item of its target domain in its history (the cold-start case)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        td = i % 2
        length = int(rng.integers(2, max_hist + 1))
        hist = rng.integers(0, catalog.n_items, size=length)
        if i % 4 == 3:  # only source-domain items
            hist = rng.choice(catalog.domain_items(1 - td), size=length)
        target = int(rng.choice(catalog.domain_items(td)))
        rows.append({"user_id": i, "history": hist.tolist(),
                     "history_domain": catalog.item_domain[hist].tolist(),
                     "target": target, "target_domain": catalog.domains[td]})
    return rows


def make_batch(catalog: Catalog, n: int, seed: int = 0, max_len: int = 12) -> dict[str, torch.Tensor]:
    return collate_rows(make_rows(catalog, n, seed, max_len), max_len, catalog.domains)


def small_cfg(name: str, **kw) -> ModelConfig:
    """A test-sized config: 32 wide, 1 layer, no dropout (so outputs are deterministic)."""
    base = dict(name=name, hidden_dim=32, num_layers=1, num_heads=2, max_len=12, dropout=0.0,
                adapter_hidden=32, num_negatives=64)
    base.update(kw)
    return ModelConfig(**base)
