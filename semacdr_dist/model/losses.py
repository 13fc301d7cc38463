"""Losses as plain functions: masked full softmax, sampled softmax with logQ, BCE, InfoNCE."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def full_softmax_loss(user: torch.Tensor, items: torch.Tensor, target: torch.Tensor,
                      allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of `target` over all items; `allowed` [B, N] bool masks other domains."""
    logits = user @ items.T
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    return F.cross_entropy(logits, target)


def sampled_softmax_loss(
    user: torch.Tensor,
    target_vec: torch.Tensor,
    target: torch.Tensor,
    neg_vec: torch.Tensor,
    neg_ids: torch.Tensor,
    neg_logq: torch.Tensor,
    neg_allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled softmax with logQ correction; negatives are shared by the batch.

    With K negatives drawn with replacement from q, a negative's logit becomes
    o_j - log(K q_j), so sum_j exp(o_j - log(K q_j)) is an unbiased estimate of the
    partition function over the non-target items (accidental hits j == target are
    removed). `neg_allowed` [B, K] drops negatives outside an example's target domain.
    """
    pos = (user * target_vec).sum(-1, keepdim=True)  # [B, 1]
    k = neg_ids.shape[0]
    neg = user @ neg_vec.T - (neg_logq + math.log(k))[None]  # [B, K]
    drop = neg_ids[None] == target[:, None]
    if neg_allowed is not None:
        drop = drop | ~neg_allowed
    neg = neg.masked_fill(drop, float("-inf"))
    logits = torch.cat([pos, neg], 1)
    return -(pos[:, 0] - torch.logsumexp(logits, 1)).mean()


def bce_loss(user: torch.Tensor, target_vec: torch.Tensor, neg_vec: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with one negative per example (SASRec's original objective)."""
    pos = (user * target_vec).sum(-1)
    neg = (user * neg_vec).sum(-1)
    return F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + \
        F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE: row i of `anchor` against every row of `positive`, row i the positive.

    Both are L2-normalised; in-batch negatives; mean over rows of
    -log( exp(a_i.p_i / t) / sum_j exp(a_i.p_j / t) ).
    """
    a = F.normalize(anchor, dim=-1)
    p = F.normalize(positive, dim=-1)
    logits = a @ p.T / temperature
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def multi_positive_nce(z: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised-contrastive term over one set of vectors: pairs marked in `positives`
    [n, n] bool (diagonal ignored) are pulled together against all other rows.
    Returns 0 when no row has a positive."""
    z = F.normalize(z, dim=-1)
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    logp = logits.log_softmax(1)
    pos = positives & ~eye
    if not pos.any():
        return z.sum() * 0.0
    return -(logp[pos]).mean()
