"""Exact full-corpus validation for small catalogs, in the worker's own process.

The protocol is the evaluate stage's default (`evaluate/metrics.py`), so the
number early stopping monitors is the number the report shows for `valid`:
each sequence is ranked against every item of its target domain, its history
items are removed from the candidates (a target it has already seen counts as
a miss, as in evaluate), ties are broken by item id, and the 1-based rank
(0 = miss) goes through `evaluate.metrics.metric_table`. Sums, not means, come
back so that data-parallel ranks can all-reduce them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

from semacdr_dist.evaluate.metrics import metric_table

K = 10
_NAMES, _TABLE = metric_table(K, [K])  # hr@10, ndcg@10, mrr@10; row r = values at rank r
METRIC_NAMES = tuple(_NAMES)


def target_ranks(scores: torch.Tensor, batch: Mapping[str, torch.Tensor], item_domain: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among its target domain's items minus its history; 0 = excluded.

    scores [B, N] over all items; item_domain int [N]; returns int64 [B].
    """
    device = scores.device
    target = batch["target"].to(device)
    scores = scores.float()
    n = scores.shape[1]
    keep = item_domain.to(device)[None, :] == batch["target_domain"].to(device)[:, None]
    history = batch["history"].to(device)
    seen = torch.zeros(len(target), n + 1, dtype=torch.bool, device=device)  # column n takes the padding
    seen.scatter_(1, torch.where(history >= 0, history, n), True)
    keep &= ~seen[:, :n]
    target_score = scores.gather(1, target[:, None])
    ids = torch.arange(n, device=device)[None, :]
    ahead = keep & ((scores > target_score) | ((scores == target_score) & (ids < target[:, None])))
    rank = 1 + ahead.sum(dim=1)
    return torch.where(seen.gather(1, target[:, None]).squeeze(1), 0, rank)


def rank_metric_sums(ranks: torch.Tensor) -> torch.Tensor:
    """[sum HR@10, sum NDCG@10, sum MRR@10, count] of a batch of 1-based ranks (float64)."""
    r = ranks.cpu().numpy()
    clipped = np.where((r >= 1) & (r <= K), r, 0)
    sums = _TABLE[clipped].sum(0) if len(r) else np.zeros(len(METRIC_NAMES))
    return torch.tensor([*sums, float(len(r))], dtype=torch.float64)


def metrics_from_sums(sums: torch.Tensor | np.ndarray, prefix: str = "valid/") -> dict[str, float]:
    s = [float(x) for x in sums]
    n = max(s[-1], 1.0)
    out = {f"{prefix}{name}": s[i] / n for i, name in enumerate(METRIC_NAMES)}
    out[f"{prefix}count"] = s[-1]
    return out


@torch.no_grad()
def score_batches(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    item_domain: torch.Tensor,
    weights: Iterable[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Metric sums over batches with `model.full_sort_predict`; `weights` (0/1 per row) drop padding rows."""
    total = torch.zeros(len(METRIC_NAMES) + 1, dtype=torch.float64)
    weights = iter(weights) if weights is not None else None
    for batch in batches:
        ranks = target_ranks(model.full_sort_predict(batch), batch, item_domain).cpu()
        if weights is None:
            total += rank_metric_sums(ranks)
        else:
            w = next(weights).bool()
            total += rank_metric_sums(ranks[w])
    return total

