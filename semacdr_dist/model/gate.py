"""Adaptive fusion of the source, target and mixed thread vectors into one user vector."""

from __future__ import annotations

import torch
from torch import nn

THREADS = ("source", "target", "mixed")


class ThreadGate(nn.Module):
    """Softmax weights over the three threads from [v_source, v_target, v_mixed, log1p(lengths)].

    An empty thread gets weight 0 (its logit is masked), so a user with no target-domain
    history is represented by the source and mixed threads only; the lengths let the gate
    trust a short target thread less. `mode="mean"` is the uniform-weight ablation.
    """

    def __init__(self, dim: int, hidden: int, mode: str):
        super().__init__()
        self.mode = mode
        # No parameters in mean mode: unused ones would trip DDP/DeepSpeed's gradient checks.
        self.mlp = (nn.Sequential(nn.Linear(3 * dim + 3, hidden), nn.GELU(), nn.Linear(hidden, 3))
                    if mode == "adaptive" else None)

    def forward(self, vectors: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """vectors [B, 3, D], lengths [B, 3] → (user [B, D], weights [B, 3])."""
        if self.mlp is not None:
            feats = torch.cat([vectors.flatten(1), torch.log1p(lengths.to(vectors.dtype))], 1)
            logits = self.mlp(feats)
        else:
            logits = vectors.new_zeros(vectors.shape[0], 3)
        empty = lengths == 0
        # A user with no history at all keeps uniform weights over (zero) vectors: no NaN.
        empty = empty & ~empty.all(1, keepdim=True)
        weights = torch.softmax(logits.masked_fill(empty, float("-inf")), dim=1)
        return (weights[..., None] * vectors).sum(1), weights
