"""Ranking metrics from the rank of the target: HR@K, NDCG@K, MRR@K.

One top-max(K) search per example gives the target's rank (1-based; 0 = not in
the top max(K)); every cutoff is read from it. Groups: all examples, each target
domain, and cold-start vs warm users. Confidence intervals come from a seeded
bootstrap; because a metric depends on the example only through its rank, a
resample of examples is a multinomial draw over the rank histogram, which is
exact and costs O(B * max(K)) instead of O(B * n).

The sampled protocol ranks the target among ``n`` negatives drawn from its own
domain (not the target, not the history when history is excluded), the setting
of published cross-domain tables.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

METRICS = ("hr", "ndcg", "mrr")
RESERVED_GROUPS = ("cold", "warm", "sampled")


def target_ranks(topk_ids: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each target in its top-K row; 0 where it is absent."""
    topk_ids = np.asarray(topk_ids)
    targets = np.asarray(targets, dtype=np.int64)
    if topk_ids.ndim != 2 or len(topk_ids) != len(targets):
        raise ValueError(f"topk_ids {topk_ids.shape} and targets {targets.shape} disagree")
    hit = topk_ids == targets[:, None]
    return np.where(hit.any(1), hit.argmax(1) + 1, 0).astype(np.int64)


def metric_table(max_rank: int, ks: Sequence[int]) -> tuple[list[str], np.ndarray]:
    """Names and a [max_rank + 1, M] table: row r = metric values of an example at rank r (0 = miss)."""
    r = np.arange(max_rank + 1, dtype=np.float64)
    names, cols = [], []
    for k in sorted(ks):
        inside = (r >= 1) & (r <= k)
        safe = np.maximum(r, 1)
        for name, col in (
            ("hr", inside.astype(np.float64)),
            ("ndcg", np.where(inside, 1.0 / np.log2(safe + 1), 0.0)),
            ("mrr", np.where(inside, 1.0 / safe, 0.0)),
        ):
            names.append(f"{name}@{k}")
            cols.append(col)
    return names, np.stack(cols, 1)


def rank_metrics(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Mean HR/NDCG/MRR at each cutoff over all given ranks (ranks > max(ks) count as misses)."""
    names, table = metric_table(max(ks), ks)
    ranks = np.asarray(ranks, dtype=np.int64)
    if len(ranks) == 0:
        return {n: float("nan") for n in names}
    clipped = np.where((ranks >= 1) & (ranks <= max(ks)), ranks, 0)
    return dict(zip(names, table[clipped].mean(0).tolist(), strict=True))


def bootstrap_ci(
    ranks: np.ndarray, ks: Sequence[int], samples: int, seed: int | Sequence[int], level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each metric, seeded (multinomial over the rank histogram)."""
    names, table = metric_table(max(ks), ks)
    ranks = np.asarray(ranks, dtype=np.int64)
    n = len(ranks)
    if n == 0 or samples <= 0:
        return {}
    clipped = np.where((ranks >= 1) & (ranks <= max(ks)), ranks, 0)
    p = np.bincount(clipped, minlength=max(ks) + 1) / n
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, p, size=samples)  # [B, max_rank + 1]
    means = counts @ table / n  # [B, M]
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {name: (float(a), float(b)) for name, a, b in zip(names, lo, hi, strict=True)}


def target_domain_history_counts(histories: np.ndarray, item_domain: np.ndarray, target_domain: np.ndarray) -> np.ndarray:
    """Per example: how many history items (padding -1 ignored) lie in the target's domain."""
    h = np.asarray(histories, dtype=np.int64)
    valid = h >= 0
    dom = np.where(valid, np.asarray(item_domain, dtype=np.int64)[np.where(valid, h, 0)], -1)
    return (dom == np.asarray(target_domain, dtype=np.int64)[:, None]).sum(1)


def sample_negatives(
    targets: np.ndarray,
    target_domain: np.ndarray,
    item_domain: np.ndarray,
    histories: np.ndarray,
    n_negatives: int,
    seed: int,
    exclude_history: bool,
) -> np.ndarray:
    """[n, n_negatives] negatives per example (-1 where the domain has too few eligible items).

    Uniform without replacement from the target domain's items, never the target, never a
    history item when ``exclude_history``; one generator seeded by ``seed`` walks the
    examples in order, so the draw is deterministic for the same inputs and seed.
    """
    item_domain = np.asarray(item_domain, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    target_domain = np.asarray(target_domain, dtype=np.int64)
    pools = {int(d): np.flatnonzero(item_domain == d) for d in np.unique(target_domain)}
    rng = np.random.default_rng([seed, 0x5A3D])
    negs = np.full((len(targets), n_negatives), -1, dtype=np.int64)
    for i in range(len(targets)):
        pool = pools[int(target_domain[i])]
        banned = {int(targets[i])}
        if exclude_history:
            banned.update(int(x) for x in histories[i] if x >= 0)
        take = min(len(pool), n_negatives + len(banned))
        picked = pool[rng.choice(len(pool), size=take, replace=False)]
        picked = picked[~np.isin(picked, list(banned))][:n_negatives]
        negs[i, : len(picked)] = picked
    return negs


def sampled_ranks(
    queries: np.ndarray,
    item_vectors: np.ndarray,
    targets: np.ndarray,
    target_domain: np.ndarray,
    item_domain: np.ndarray,
    histories: np.ndarray,
    n_negatives: int,
    seed: int,
    exclude_history: bool,
    chunk: int = 2048,
) -> tuple[np.ndarray, int]:
    """Rank of each target among ``n_negatives`` seeded negatives of its domain (see
    :func:`sample_negatives`). Ties with the target are broken by item id, as in the full
    ranking. Returns (ranks, number of examples with fewer than ``n_negatives`` negatives).
    """
    targets = np.asarray(targets, dtype=np.int64)
    negs = sample_negatives(targets, target_domain, item_domain, histories, n_negatives, seed, exclude_history)
    ranks = np.empty(len(targets), dtype=np.int64)
    for a in range(0, len(targets), chunk):
        b = min(len(targets), a + chunk)
        q = np.asarray(queries[a:b], dtype=np.float32)
        t_score = np.einsum("bd,bd->b", q, item_vectors[targets[a:b]])
        nb = negs[a:b]
        n_score = np.einsum("bd,bnd->bn", q, item_vectors[np.maximum(nb, 0)])
        above = (n_score > t_score[:, None]) | ((n_score == t_score[:, None]) & (nb < targets[a:b, None]))
        ranks[a:b] = 1 + (above & (nb >= 0)).sum(1)
    return ranks, int((negs < 0).any(1).sum())


def _group_seed(seed: int, key: str) -> list[int]:
    return [seed, zlib.crc32(key.encode())]


def summarize(
    ranks: np.ndarray,
    groups: dict[str, np.ndarray],
    ks: Sequence[int],
    prefix: str,
    bootstrap_samples: int,
    seed: int,
) -> dict[str, float]:
    """Flat metrics ``<prefix>[/<group>]/<metric>@K`` (+ ``/ci95_lo``, ``/ci95_hi``, ``/n``) per group.

    ``groups`` maps a group name ("" = all examples) to a boolean mask.
    """
    out: dict[str, float] = {}
    for gname, mask in groups.items():
        base = f"{prefix}/{gname}" if gname else prefix
        r = ranks[mask]
        out[f"{base}/n"] = int(len(r))
        if len(r) == 0:
            continue  # no examples: no numbers (NaN would be invalid JSON)
        for name, v in rank_metrics(r, ks).items():
            out[f"{base}/{name}"] = v
        for name, (lo, hi) in bootstrap_ci(r, ks, bootstrap_samples, _group_seed(seed, base)).items():
            out[f"{base}/{name}/ci95_lo"] = lo
            out[f"{base}/{name}/ci95_hi"] = hi
    return out


def example_groups(
    target_domain: np.ndarray, cold: np.ndarray, domains: Sequence[str]
) -> dict[str, np.ndarray]:
    """Masks of the reported groups: all, each target domain, cold, warm."""
    clash = [d for d in domains if d in RESERVED_GROUPS or not d or "/" in d]
    if clash:
        raise ValueError(f"domain names {clash} clash with metric key groups {RESERVED_GROUPS} or contain '/'")
    td = np.asarray(target_domain)
    groups = {"": np.ones(len(td), dtype=bool)}
    for i, d in enumerate(domains):
        groups[d] = td == i
    groups["cold"] = np.asarray(cold, dtype=bool)
    groups["warm"] = ~groups["cold"]
    return groups
