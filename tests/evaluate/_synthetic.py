"""Synthetic corpora for the evaluate tests: small integer vectors, so every inner
product is exact in float32 and ties are frequent (the hard case for tie-breaking)."""

from __future__ import annotations

import numpy as np

DOMAINS = ["food", "kitchen", "books"]


def corpus(n_items: int = 3000, dim: int = 8, n_queries: int = 300, hist_len: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    items = rng.integers(-2, 3, size=(n_items, dim)).astype(np.float32)
    item_domain = rng.integers(0, len(DOMAINS), size=n_items).astype(np.int64)
    queries = rng.integers(-2, 3, size=(n_queries, dim)).astype(np.float32)
    target_domain = rng.integers(0, len(DOMAINS), size=n_queries).astype(np.int64)
    targets = np.array([rng.choice(np.flatnonzero(item_domain == d)) for d in target_domain])
    lengths = rng.integers(0, hist_len + 1, size=n_queries)
    histories = np.full((n_queries, hist_len), -1, dtype=np.int64)
    for i, n in enumerate(lengths):
        if n:
            histories[i, hist_len - n :] = rng.integers(0, n_items, size=n)
    return items, item_domain, queries, targets, target_domain, histories


def brute_force_topk(items, item_domain, queries, target_domain, histories, k, candidates, exclude_history):
    """Reference top-k with torch: full score matrix, masks, order (score desc, id asc)."""
    import torch

    scores = torch.from_numpy(queries) @ torch.from_numpy(items).T  # [nq, N]
    if candidates == "target_domain":
        same = torch.from_numpy(item_domain)[None, :] == torch.from_numpy(target_domain)[:, None]
        scores = scores.masked_fill(~same, float("-inf"))
    if exclude_history:
        h = torch.from_numpy(histories)
        rows = torch.arange(len(h))[:, None].expand_as(h)
        valid = h >= 0
        scores[rows[valid], h[valid]] = float("-inf")
    order = torch.argsort(-scores, dim=1, stable=True)[:, :k]  # stable: ties keep id order
    top = torch.gather(scores, 1, order)
    ids = torch.where(torch.isinf(top), torch.full_like(order, -1), order)
    return top.numpy(), ids.numpy()
