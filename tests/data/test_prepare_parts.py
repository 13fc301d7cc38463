"""Prepare with item rows spread over many staged shards and written as many `items/` parts:
the driver keeps only ids; the output equals one in-memory renumbering of the same items."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from semacdr_dist.config import load_config
from semacdr_dist.data.catalog import load_catalog
from semacdr_dist.data.prepare import run_prepare
from semacdr_dist.data.readers.base import RULE_DUPLICATE_ITEM
from semacdr_dist.pipeline import prepare_config
from semacdr_dist.rundir import RunDir


def test_items_in_many_shards_and_parts(ray_local, tmp_path):
    rng = np.random.default_rng(3)
    n = 70
    raw_ids = rng.permutation(np.arange(1000, 1000 + 3 * n))[:n].astype(np.int64)
    domains = np.array(["b", "a", "c"])[rng.integers(0, 3, n)]  # "b" appears first: domain order b, a, c
    domains[0] = "b"
    items = {"item_id": raw_ids, "domain": domains, "raw_id": [f"r{i}" for i in raw_ids],
             "title": [f"Item {i}" for i in raw_ids], "categories": [[] for _ in raw_ids],
             "brand": [""] * n, "description": [""] * n}
    # two repeated ids in later chunks: rejected, the first occurrence is kept
    dup_rows = [("r_dup1", raw_ids[5], domains[5]), ("r_dup2", raw_ids[40], "a")]
    for raw, i, d in dup_rows:
        for k, v in (("item_id", i), ("domain", d), ("raw_id", raw), ("title", "again"), ("categories", []), ("brand", ""), ("description", "")):
            items[k] = list(items[k]) + [v]
    pq.write_table(pa.table(items), tmp_path / "items.parquet")
    users = np.repeat(np.arange(30), 4)
    inter = pa.table({"user_id": users, "item_id": rng.choice(raw_ids, len(users)),
                      "domain": ["a"] * len(users), "timestamp": np.arange(len(users))})
    pq.write_table(inter, tmp_path / "interactions.parquet")

    cfg = load_config(["data.source=tabular", f"data.path={tmp_path}", "data.on_bad_rows=reject",
                       "data.chunk_rows=16", f"run_dir={tmp_path / 'run'}"])
    run = RunDir(cfg.run_dir)
    stats = run_prepare(prepare_config(cfg), run)

    order = ["b", "a", "c"]
    want = sorted(zip([order.index(d) for d in domains], raw_ids.tolist(), strict=True))
    parts = sorted(run.list_files("items"))
    assert parts == [f"part-{p:05d}.parquet" for p in range(-(-n // 16))]  # 16 consecutive ids per part
    got = pa.concat_tables([run.read_table("items", p) for p in parts])
    assert got["item_id"].to_pylist() == list(range(n))
    assert list(zip([order.index(d) for d in got["domain"].to_pylist()], [int(r[1:]) for r in got["raw_id"].to_pylist()], strict=True)) == want
    assert pq.read_metadata(run.path("items", parts[0])).num_rows == 16
    assert stats["domains"] == order and stats["n_items"] == n
    assert stats["items_per_domain"] == {d: int((domains == d).sum()) for d in order}
    rej = run.read_table("rejected").to_pylist()
    assert sorted((r["row"], r["rule"]) for r in rej) == [(n, RULE_DUPLICATE_ITEM), (n + 1, RULE_DUPLICATE_ITEM)]
    assert load_catalog(run).n_items == n
