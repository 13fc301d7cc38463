"""A tiny prepared run directory (items/, sequences/, stats.json) with a learnable signal.

Sequences follow "next item = previous item + 1 (within its domain)" most of the
time, so a sequence model beats popularity clearly after a few seconds of training.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from semacdr_dist.data.schemas import ITEMS, SEQUENCES, features_schema
from semacdr_dist.rundir import RunDir

DOMAINS = ["books", "movies"]


def make_tiny_run(root, n_items_per_domain: int = 60, n_users: int = 240, seq_len: int = 12, seed: int = 0,
                  feature_dim: int = 16) -> RunDir:
    rng = np.random.default_rng(seed)
    run = RunDir(str(root))
    n = n_items_per_domain * len(DOMAINS)
    item_domain = np.repeat(np.arange(len(DOMAINS)), n_items_per_domain)
    run.write_table("items/part-00000.parquet", pa.table({
        "item_id": np.arange(n, dtype=np.int64),
        "domain": [DOMAINS[d] for d in item_domain],
        "raw_id": [f"i{i}" for i in range(n)],
        "title": [f"item {i}" for i in range(n)],
        "categories": [[DOMAINS[d]] for d in item_domain],
        "brand": ["b"] * n,
        "description": ["d"] * n,
    }, schema=ITEMS))
    rows = {s: {k: [] for k in SEQUENCES.names} for s in ("train", "valid", "test")}
    for u in range(n_users):
        d = rng.integers(len(DOMAINS))
        start = rng.integers(n_items_per_domain)
        seq = []
        for t in range(seq_len):
            # mostly a walk through one domain, some hops into the other
            dom = d if rng.random() < 0.8 else 1 - d
            step = start + t if rng.random() < 0.9 else rng.integers(n_items_per_domain)
            seq.append(int(dom * n_items_per_domain + step % n_items_per_domain))
        doms = [int(item_domain[i]) for i in seq]
        for t in range(2, seq_len):
            split = "test" if t == seq_len - 1 else "valid" if t == seq_len - 2 else "train"
            r = rows[split]
            r["user_id"].append(u)
            r["split"].append(split)
            r["target_domain"].append(DOMAINS[doms[t]])
            r["history"].append(seq[:t])
            r["history_domain"].append(doms[:t])
            r["target"].append(seq[t])
    for split, r in rows.items():
        run.write_table(f"sequences/{split}/part-00000.parquet", pa.table(r, schema=SEQUENCES))
    run.write_json("stats.json", {"domains": DOMAINS, "n_items": n, "n_users": n_users})
    # Random-but-informative frozen features: a noisy code of the item's position in its domain.
    pos = np.arange(n) % n_items_per_domain
    base = rng.normal(size=(n_items_per_domain, feature_dim)).astype(np.float32)
    vec = {v: (base[pos] + 0.3 * rng.normal(size=(n, feature_dim))).astype(np.float32)
           for v in ("content", "specific", "agnostic")}
    run.write_table("features/part-00000.parquet", pa.table({
        "item_id": np.arange(n, dtype=np.int64),
        **{v: pa.array(list(vec[v]), type=pa.list_(pa.float32(), feature_dim)) for v in vec},
        "encoder": ["test-random"] * n,
    }, schema=features_schema(feature_dim)))
    return run


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("tiny-run"))


@pytest.fixture(scope="session")
def make_run():
    """The `make_tiny_run` factory, for tests that need their own run directory."""
    return make_tiny_run
