"""At catalog scale: 1, 2 and 4 shard actors return exactly the top-K of one brute-force
`faiss.IndexFlatIP` over a 100k-item corpus, from arrays and from a vector file."""

from __future__ import annotations

import numpy as np
import pytest

from semacdr_dist.evaluate.config import EvalConfig
from semacdr_dist.evaluate.sharded import ShardedIndex, VectorFile

N_ITEMS, DIM, N_QUERIES, K = 100_000, 64, 500, 50


@pytest.fixture(scope="module")
def corpus():
    # Integer components: every inner product is exact in float32 whatever the summation
    # order, so ids can be compared exactly; ties still happen and are broken by item id.
    rng = np.random.default_rng(17)
    items = rng.integers(-100, 101, size=(N_ITEMS, DIM)).astype(np.float32)
    queries = rng.integers(-100, 101, size=(N_QUERIES, DIM)).astype(np.float32)
    return items, queries, _flat_reference(items, queries, K)


def _flat_reference(items: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one IndexFlatIP, ordered (score desc, id asc), fetched deep enough that no tie is cut."""
    import faiss

    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items)
    depth = 2 * k
    while True:
        s, i = index.search(queries, depth)
        order = np.lexsort((i, -s), axis=1)
        s, i = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
        if (s[:, -1] < s[:, k - 1]).all():  # nothing unfetched can tie the k-th score
            return s[:, :k], i[:, :k]
        depth *= 2


@pytest.mark.parametrize("num_shards", [1, 2, 4])
def test_shards_equal_one_flat_index(ray_local, corpus, num_shards):
    items, queries, (ref_s, ref_i) = corpus
    cfg = EvalConfig(num_shards=num_shards, shard_num_cpus=0.5, candidates="all", exclude_history=False, query_batch_size=128)
    with ShardedIndex.build(items, np.zeros(N_ITEMS, np.int8), cfg, 1) as index:
        sizes = [i["ntotal"] for i in index.shard_info]
        got_s, got_i = index.search(queries, None, K)
    assert sum(sizes) == N_ITEMS and max(sizes) - min(sizes) <= 1
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_array_equal(got_s, ref_s)


def test_vector_file_shards_hold_their_slice(ray_local, corpus, tmp_path):
    """Actors read their slice of a .npy themselves: same top-K, each indexing only its quarter."""
    items, queries, (_, ref_i) = corpus
    np.save(tmp_path / "items.npy", items)
    cfg = EvalConfig(num_shards=4, shard_num_cpus=0.5, candidates="all", exclude_history=False)
    with ShardedIndex.build(VectorFile(str(tmp_path / "items.npy")), np.zeros(N_ITEMS, np.int8), cfg, 1) as index:
        _, got_i = index.search(queries, None, K)
        info = index.info()
    np.testing.assert_array_equal(got_i, ref_i)
    assert [(i["start"], i["stop"], i["ntotal"]) for i in info] == [(a, a + N_ITEMS // 4, N_ITEMS // 4) for a in range(0, N_ITEMS, N_ITEMS // 4)]
