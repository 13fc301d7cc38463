"""Exact full-corpus validation for small catalogs, in the worker's own process.

One ranking protocol for training and evaluation: the candidates of a sequence are
its target domain's items minus its history, ordered by score, ties broken by the
lower item id; the target's rank is its 1-based position in the top-K list (0 =
absent, which includes a target already in the history). The evaluate stage gets its
top-K list from sharded FAISS (`evaluate/sharded.py`), validation here from the full
score matrix (:func:`full_sort_topk`); both turn the list into ranks with the one
:func:`semacdr_dist.evaluate.metrics.target_ranks` and into metrics with the one
`evaluate.metrics.metric_table`, so the number early stopping monitors is the number
the report shows for `valid` (tests/evaluate/test_ranking_protocol.py checks both paths agree).
Sums, not means, come back so that data-parallel ranks can all-reduce them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

from semacdr_dist.evaluate.metrics import metric_table, target_ranks

K = 10
_NAMES, _TABLE = metric_table(K, [K])  # hr@10, ndcg@10, mrr@10; row r = values at rank r
METRIC_NAMES = tuple(_NAMES)


def full_sort_topk(scores: torch.Tensor, batch: Mapping[str, torch.Tensor], item_domain: torch.Tensor,
                   k: int = K) -> torch.Tensor:
    """Per row, the ids of the top-``k`` candidates (score desc, then id asc); -1 = empty slot.

    scores [B, N] over all items; item_domain int [N]; ``batch`` holds target_domain [B] and
    history [B, L] (padding -1). Candidates: the target domain's items minus the history.
    """
    device = scores.device
    scores = scores.float()
    b, n = scores.shape
    k = min(k, n)
    keep = item_domain.to(device)[None, :] == batch["target_domain"].to(device)[:, None]
    history = batch["history"].to(device)
    seen = torch.zeros(b, n + 1, dtype=torch.bool, device=device)  # column n takes the padding
    seen.scatter_(1, torch.where(history >= 0, history, n), True)
    keep &= ~seen[:, :n]
    masked = scores.masked_fill(~keep, float("-inf"))
    kth = masked.topk(k, dim=1).values[:, -1:]  # the k-th best candidate score of each row
    above = keep & (masked > kth)
    tied = keep & (masked == kth)
    # Items tying the k-th score: the lowest ids fill the slots left above them.
    chosen = above | (tied & (tied.cumsum(1) <= k - above.sum(1, keepdim=True)))
    rows, cols = chosen.nonzero(as_tuple=True)  # row-major: ids ascending within a row
    counts = chosen.sum(1)
    pos = torch.arange(len(rows), device=device) - (counts.cumsum(0) - counts)[rows]
    ids = torch.full((b, k), -1, dtype=torch.long, device=device)
    top = torch.full((b, k), float("-inf"), device=device)
    ids[rows, pos] = cols
    top[rows, pos] = masked[rows, cols]
    order = top.sort(dim=1, descending=True, stable=True).indices  # stable: ties keep id order
    return ids.gather(1, order)


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
        top = full_sort_topk(model.full_sort_predict(batch), batch, item_domain, K)
        ranks = torch.from_numpy(target_ranks(top.cpu().numpy(), batch["target"].cpu().numpy()))
        if weights is None:
            total += rank_metric_sums(ranks)
        else:
            w = next(weights).bool()
            total += rank_metric_sums(ranks[w])
    return total

