"""Metrics against hand-computed cases; bootstrap and sampled protocol deterministic by seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from semacdr_dist.evaluate.metrics import (
    bootstrap_ci,
    example_groups,
    rank_metrics,
    sample_negatives,
    sampled_ranks,
    summarize,
    target_domain_history_counts,
    target_ranks,
)


def test_target_ranks():
    ids = np.array([[5, 3, 9], [1, 2, 3], [4, -1, -1]])
    np.testing.assert_array_equal(target_ranks(ids, np.array([3, 7, 4])), [2, 0, 1])


def test_rank_metrics_hand_computed():
    ranks = np.array([1, 2, 0, 4, 7])
    m = rank_metrics(ranks, [1, 5, 10])
    assert m["hr@1"] == pytest.approx(1 / 5)
    assert m["hr@5"] == pytest.approx(3 / 5)
    assert m["hr@10"] == pytest.approx(4 / 5)
    assert m["ndcg@1"] == pytest.approx(1 / 5)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 5)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5) + 1 / 3) / 5)
    assert m["mrr@5"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 5)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 7) / 5)
    # a rank beyond max(K) (sampled protocol) is a miss
    assert rank_metrics(np.array([60]), [10])["hr@10"] == 0.0


def test_bootstrap_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 30, size=500)
    a = bootstrap_ci(ranks, [10], 500, seed=1)
    b = bootstrap_ci(ranks, [10], 500, seed=1)
    c = bootstrap_ci(ranks, [10], 500, seed=2)
    assert a == b and a != c
    mean = rank_metrics(ranks, [10])
    for name, (lo, hi) in a.items():
        assert lo <= mean[name] <= hi
        assert hi - lo < 0.2
    # every example identical: no spread
    lo, hi = bootstrap_ci(np.ones(50, dtype=int), [5], 200, seed=0)["ndcg@5"]
    assert lo == hi == 1.0
    # matches the textbook example-resampling bootstrap in distribution (standard error)
    table = (ranks >= 1) & (ranks <= 10)
    naive = [table[rng.integers(0, 500, 500)].mean() for _ in range(2000)]
    lo, hi = bootstrap_ci(ranks, [10], 2000, seed=3)["hr@10"]
    assert (hi - lo) == pytest.approx(np.quantile(naive, 0.975) - np.quantile(naive, 0.025), rel=0.15)


def test_cold_start_counts_and_groups():
    item_domain = np.array([0, 0, 1, 1, 2])
    hist = np.array([[-1, 0, 1, 2], [-1, -1, -1, 3], [4, 4, 2, 0]])
    td = np.array([0, 1, 2])
    np.testing.assert_array_equal(target_domain_history_counts(hist, item_domain, td), [2, 1, 2])
    g = example_groups(td, np.array([False, True, False]), ["food", "kitchen", "books"])
    assert list(g) == ["", "food", "kitchen", "books", "cold", "warm"]
    np.testing.assert_array_equal(g["warm"], [True, False, True])
    with pytest.raises(ValueError, match="clash"):
        example_groups(td, np.zeros(3, bool), ["cold", "b", "c"])


def test_summarize_keys():
    ranks = np.array([1, 0, 3, 2])
    groups = {"": np.ones(4, bool), "food": np.array([1, 1, 0, 0], bool), "cold": np.array([0, 0, 1, 1], bool)}
    m = summarize(ranks, groups, [1, 5], "test", bootstrap_samples=50, seed=0)
    assert m["test/n"] == 4 and m["test/food/n"] == 2
    assert m["test/hr@1"] == 0.25 and m["test/food/hr@1"] == 0.5 and m["test/cold/hr@1"] == 0.0
    assert m["test/cold/mrr@5"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert m["test/ndcg@5/ci95_lo"] <= m["test/ndcg@5"] <= m["test/ndcg@5/ci95_hi"]


def _sampled_inputs():
    rng = np.random.default_rng(0)
    n_items = 1000
    item_domain = (np.arange(n_items) % 2).astype(np.int64)  # even ids: domain 0, odd: domain 1
    td = rng.integers(0, 2, 64)
    targets = np.array([rng.choice(np.flatnonzero(item_domain == d)) for d in td])
    hist = rng.integers(0, n_items, (64, 8))
    return item_domain, targets, td, hist


def test_sampled_negatives_deterministic_and_valid():
    item_domain, targets, td, hist = _sampled_inputs()
    a = sample_negatives(targets, td, item_domain, hist, 100, seed=7, exclude_history=True)
    b = sample_negatives(targets, td, item_domain, hist, 100, seed=7, exclude_history=True)
    c = sample_negatives(targets, td, item_domain, hist, 100, seed=8, exclude_history=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a >= 0).all()
    assert (item_domain[a] == td[:, None]).all()  # from the target domain
    assert not (a == targets[:, None]).any()  # never the target
    assert not (a[:, :, None] == hist[:, None, :]).any()  # never a history item
    assert all(len(set(row)) == 100 for row in a)  # without replacement


def test_sampled_ranks_hand_computed():
    # 1-d vectors: score = item id; domain 0 = ids 0..9, domain 1 = ids 10..14 (fewer than 100)
    item_vectors = np.arange(15, dtype=np.float32)[:, None]
    item_domain = np.array([0] * 10 + [1] * 5)
    queries = np.ones((3, 1), dtype=np.float32)
    targets = np.array([7, 2, 12])
    td = np.array([0, 0, 1])
    hist = np.array([[9, -1], [-1, -1], [14, 13]])
    ranks, short = sampled_ranks(queries, item_vectors, targets, td, item_domain, hist, 100, seed=0, exclude_history=True)
    # target 7: higher in domain 0 = 8, 9 minus history 9 -> rank 2; target 2: 3..9 above -> 8;
    # target 12: 13, 14 are history -> rank 1. Every domain is smaller than 100: all short.
    np.testing.assert_array_equal(ranks, [2, 8, 1])
    assert short == 3
    ranks, _ = sampled_ranks(-queries, item_vectors, targets, td, item_domain, hist, 100, seed=0, exclude_history=False)
    np.testing.assert_array_equal(ranks, [8, 3, 3])  # lower ids score higher now; history kept
