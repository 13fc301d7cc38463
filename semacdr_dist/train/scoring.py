"""Exact full-corpus validation for small catalogs, in the worker's own process.

Each sequence is ranked against every item of its target domain (items of
other domains are masked with -inf); the rank of the target gives NDCG@K, HR@K
and MRR. Ties count against the target (rank = items scoring strictly higher),
so a model that scores everything equal does not look perfect.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch

METRIC_NAMES = ("ndcg@10", "hr@10", "mrr")


def target_ranks(scores: torch.Tensor, batch: Mapping[str, torch.Tensor], item_domain: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among the items of its target domain.

    scores [B, N] over all items; item_domain int [N]; returns int64 [B].
    """
    target = batch["target"].to(scores.device)
    target_domain = batch["target_domain"].to(scores.device)
    scores = scores.float()
    in_domain = item_domain.to(scores.device)[None, :] == target_domain[:, None]
    masked = scores.masked_fill(~in_domain, float("-inf"))
    target_score = scores.gather(1, target[:, None])
    return (masked > target_score).sum(dim=1)


def rank_metric_sums(ranks: torch.Tensor, k: int = 10) -> torch.Tensor:
    """[sum NDCG@k, sum HR@k, sum MRR, count] of a batch of 0-based ranks (float64)."""
    r = ranks.double()
    hit = (r < k).double()
    ndcg = hit / torch.log2(r + 2.0)
    mrr = 1.0 / (r + 1.0)
    return torch.stack([ndcg.sum(), hit.sum(), mrr.sum(), torch.tensor(float(len(r)), dtype=torch.float64)])


def metrics_from_sums(sums: torch.Tensor | np.ndarray, prefix: str = "valid/") -> dict[str, float]:
    s = [float(x) for x in sums]
    n = max(s[3], 1.0)
    out = {f"{prefix}{name}": s[i] / n for i, name in enumerate(METRIC_NAMES)}
    out[f"{prefix}count"] = s[3]
    return out


@torch.no_grad()
def score_batches(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    item_domain: torch.Tensor,
    weights: Iterable[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Metric sums over batches with `model.full_sort_predict`; `weights` (0/1 per row) drop padding rows."""
    total = torch.zeros(4, dtype=torch.float64)
    weights = iter(weights) if weights is not None else None
    for batch in batches:
        ranks = target_ranks(model.full_sort_predict(batch), batch, item_domain).cpu()
        if weights is None:
            total += rank_metric_sums(ranks)
        else:
            w = next(weights).bool()
            total += rank_metric_sums(ranks[w])
    return total


def ndcg_of_rank(rank: int, k: int = 10) -> float:
    """Reference NDCG@k of one 0-based rank (for tests and reports)."""
    return 1.0 / math.log2(rank + 2) if rank < k else 0.0
