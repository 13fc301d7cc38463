"""Sharded FAISS search on Ray actors equals brute-force torch top-K, ids and scores."""

from __future__ import annotations

import numpy as np
import pytest
from _synthetic import DOMAINS, brute_force_topk, corpus

from semacdr_dist.evaluate.config import EvalConfig
from semacdr_dist.evaluate.sharded import ShardedIndex, merge_topk, shard_bounds, sort_topk

K = 50


def _check(got_s, got_i, ref_s, ref_i):
    np.testing.assert_array_equal(got_i, ref_i)
    finite = np.isfinite(ref_s)
    np.testing.assert_array_equal(np.isfinite(got_s), finite)
    np.testing.assert_allclose(got_s[finite], ref_s[finite], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "num_shards,candidates,exclude_history",
    [(1, "target_domain", True), (2, "target_domain", True), (4, "target_domain", True), (2, "all", False)],
)
def test_sharded_equals_brute_force(ray_local, num_shards, candidates, exclude_history):
    items, item_domain, queries, _, target_domain, histories = corpus()
    cfg = EvalConfig(
        num_shards=num_shards, shard_num_cpus=0.5, candidates=candidates, exclude_history=exclude_history, query_batch_size=64, max_inflight_batches=2
    )
    ref_s, ref_i = brute_force_topk(items, item_domain, queries, target_domain, histories, K, candidates, exclude_history)
    with ShardedIndex.build(items, item_domain, cfg, len(DOMAINS)) as index:
        assert [(i["start"], i["stop"]) for i in index.shard_info] == shard_bounds(len(items), num_shards)
        got_s, got_i = index.search(queries, target_domain, K, histories)
    _check(got_s, got_i, ref_s, ref_i)
    if candidates == "target_domain":
        assert (item_domain[got_i] == target_domain[:, None]).all()
    if exclude_history:
        assert not (got_i[:, :, None] == histories[:, None, :]).any()


def test_float_vectors_and_small_domain(ray_local):
    """Gaussian vectors; one domain with fewer items than K → -1 padding after the last candidate."""
    rng = np.random.default_rng(3)
    items = rng.standard_normal((2000, 16)).astype(np.float32)
    item_domain = np.zeros(2000, dtype=np.int64)
    item_domain[rng.choice(2000, 30, replace=False)] = 1
    queries = rng.standard_normal((200, 16)).astype(np.float32)
    target_domain = rng.integers(0, 2, 200)
    histories = [rng.choice(2000, rng.integers(0, 10)) for _ in range(200)]
    padded = np.full((200, 10), -1)
    for i, h in enumerate(histories):
        if len(h):
            padded[i, -len(h):] = h
    cfg = EvalConfig(num_shards=2, shard_num_cpus=0.5)
    ref_s, ref_i = brute_force_topk(items, item_domain, queries, target_domain, padded, K, "target_domain", True)
    with ShardedIndex.build(items, item_domain, cfg, 2) as index:
        got_s, got_i = index.search(queries, target_domain, K, histories)
    _check(got_s, got_i, ref_s, ref_i)
    assert (got_i[target_domain == 1][:, 30:] == -1).all()


def test_approximate_index_recall(ray_local):
    from semacdr_dist.evaluate.sharded import recall_at_k

    rng = np.random.default_rng(5)
    items = rng.standard_normal((4000, 16)).astype(np.float32)
    item_domain = np.zeros(4000, dtype=np.int64)
    queries = rng.standard_normal((100, 16)).astype(np.float32)
    td = np.zeros(100, dtype=np.int64)
    _, ref_i = brute_force_topk(items, item_domain, queries, td, np.full((100, 0), -1), 10, "all", False)
    for index_type in ("ivf", "hnsw"):
        cfg = EvalConfig(num_shards=2, shard_num_cpus=0.5, index_type=index_type, ivf_nlist=16, ivf_nprobe=8, exclude_history=False)
        with ShardedIndex.build(items, item_domain, cfg, 1) as index:
            _, got_i = index.search(queries, td, 10, None)
        assert recall_at_k(got_i, ref_i, 10) > 0.8, index_type


def test_merge_and_sort_are_exact_and_deterministic():
    s1 = np.array([[3.0, 2.0, 1.0]], dtype=np.float32)
    i1 = np.array([[7, 4, 2]])
    s2 = np.array([[3.0, 2.0, -np.inf]], dtype=np.float32)
    i2 = np.array([[5, 1, -1]])
    s, i = merge_topk([(s1, i1), (s2, i2)], 4)
    np.testing.assert_array_equal(i, [[5, 7, 1, 4]])  # ties broken by id ascending
    np.testing.assert_array_equal(s, [[3, 3, 2, 2]])
    s, i = sort_topk(s2, i2, 4)  # fewer than k candidates: padded with -1 / -inf
    np.testing.assert_array_equal(i, [[5, 1, -1, -1]])
    assert np.isneginf(s[0, 2:]).all()


def test_rejects_mismatched_parts(ray_local):
    items, item_domain, queries, _, target_domain, _ = corpus(n_items=200, n_queries=10)
    with pytest.raises(ValueError, match="disagree"):
        ShardedIndex.build(items, item_domain[:-1], EvalConfig(num_shards=1, shard_num_cpus=0.5))
    with ShardedIndex.build(items, item_domain, EvalConfig(num_shards=1, shard_num_cpus=0.5), 3) as index:
        with pytest.raises(ValueError, match="dim"):
            index.search(queries[:, :4], target_domain, 5)
        with pytest.raises(ValueError, match="target_domain"):
            index.search(queries, target_domain + 5, 5)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="index_type"):
        EvalConfig(index_type="lsh")
    with pytest.raises(ValueError, match="candidates"):
        EvalConfig(candidates="domain")


def test_vector_file_shards_equal_brute_force(ray_local, tmp_path):
    """Actors that read their slice from a .npy file (the driver never holds the corpus) give the same top-K."""
    from semacdr_dist.evaluate.sharded import VectorFile

    items, item_domain, queries, _, target_domain, histories = corpus(n_items=1500, n_queries=120, seed=9)
    np.save(tmp_path / "items.npy", items)
    cfg = EvalConfig(num_shards=3, shard_num_cpus=0.5, query_batch_size=50)
    ref_s, ref_i = brute_force_topk(items, item_domain, queries, target_domain, histories, K, "target_domain", True)
    with ShardedIndex.build(VectorFile(str(tmp_path / "items.npy")), item_domain, cfg, len(DOMAINS)) as index:
        assert sum(i["ntotal"] for i in index.shard_info) == len(items)
        got_s, got_i = index.search(queries, target_domain, K, histories)
    _check(got_s, got_i, ref_s, ref_i)


def test_gpu_needs_faiss_gpu(ray_local):
    import faiss

    if hasattr(faiss, "StandardGpuResources"):
        pytest.skip("faiss-gpu installed: the GPU path is exercised by the gpu-marked runs")
    items, item_domain, *_ = corpus(n_items=100, n_queries=1)
    with pytest.raises(RuntimeError, match="faiss-gpu"):
        ShardedIndex.build(items, item_domain, EvalConfig(num_shards=1, use_gpu=True), 3)


@pytest.mark.gpu
def test_gpu_shards_equal_brute_force(ray_local):
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        pytest.skip("needs faiss-gpu and a CUDA GPU")
    items, item_domain, queries, _, target_domain, histories = corpus()
    cfg = EvalConfig(num_shards=2, use_gpu=True, gpus_per_shard=0.5, shard_num_cpus=0.5)
    ref_s, ref_i = brute_force_topk(items, item_domain, queries, target_domain, histories, K, "target_domain", True)
    with ShardedIndex.build(items, item_domain, cfg, len(DOMAINS)) as index:
        got_s, got_i = index.search(queries, target_domain, K, histories)
    _check(got_s, got_i, ref_s, ref_i)
