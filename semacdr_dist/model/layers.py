"""Building blocks shared by the models: adapters, the causal sequence encoder, thread splitting.

Histories are left-padded with -1 (most recent item last), so a causal encoder's
user state is its output at the last position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAD = -1


class Dropout(nn.Dropout):
    """`nn.Dropout` with its CPU mask drawn by `torch.rand` (float32 uniforms >= p).

    On CPU, ATen's dropout draws its mask with `bernoulli_`, ~19 ns per element on one
    thread (torch 2.13, Xeon AVX-512) against ~4.5 for `rand` + compare: dropout was 26% of
    an LLM4CDSR train step (py-spy). Same distribution (keep with probability 1-p, kept
    values scaled by 1/(1-p)); other devices keep ATen's fused kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or self.p >= 1.0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        keep = torch.rand(x.shape, device=x.device) >= self.p  # float32 draws whatever x's dtype
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


class Adapter(nn.Module):
    """A small MLP from a frozen view (dim `d_in`) to the model width; `hidden=0` is linear."""

    def __init__(self, d_in: int, d_out: int, hidden: int, dropout: float):
        super().__init__()
        if hidden > 0:
            self.net = nn.Sequential(
                nn.Linear(d_in, hidden), nn.GELU(), Dropout(dropout), nn.Linear(hidden, d_out)
            )
        else:
            self.net = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # No output norm: with small init the adapted views start as small as ID embeddings,
        # so the initial logits are near zero whatever the scale of the frozen features.
        return self.net(x)


def attention_mask(valid: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, L, L] mask (True = may attend): causal AND key is not padding.

    Every query may also attend to itself, so a padding query (or an empty thread)
    has one allowed key and softmax never sees an all -inf row (no NaN); its output
    is zeroed by the encoder afterwards.
    """
    L = valid.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=valid.device).tril()
    allowed = causal[None] & valid[:, None, :]
    allowed = allowed | torch.eye(L, dtype=torch.bool, device=valid.device)[None]
    return allowed[:, None]


class Block(nn.Module):
    """Pre-norm transformer block: masked multi-head self-attention + a GELU feed-forward."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), Dropout(dropout), nn.Linear(2 * dim, dim))
        self.drop = Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        p = self.attn_dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, L, D)))
        return x + self.drop(self.ff(self.norm2(x)))


class SequenceEncoder(nn.Module):
    """SASRec-style causal encoder over item vectors: [B, L, D] + valid mask → [B, L, D].

    Positions are counted from the most recent item (0 = last), so the same item at
    the same recency gets the same position whatever the batch's padded length.
    """

    def __init__(self, dim: int, layers: int, heads: int, max_len: int, dropout: float):
        super().__init__()
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.drop = Dropout(dropout)

    def forward(self, items: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        L = items.shape[1]
        if L > self.pos.num_embeddings:
            raise ValueError(f"history length {L} > model.max_len={self.pos.num_embeddings}")
        recency = torch.arange(L - 1, -1, -1, device=items.device)
        x = self.drop(items + self.pos(recency)[None]) * valid[..., None]
        mask = attention_mask(valid)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x) * valid[..., None]

    def last(self, items: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The user state: output at the most recent position ([B, D]; zeros for an empty row).

        Rows (left-padded, as everywhere here) are encoded in groups of similar length, each
        cut to the next power of two above its longest row: histories are mostly short
        (Food-Kitchen train: mean 5.8 items, at most 50), and a batch padded to its longest row
        spent ~88% of the encoder on padding. A row's output does not depend on its group's
        width (positions count from the most recent item, padding is masked): only float
        rounding and which dropout draws it gets differ.
        """
        B, L, _ = items.shape
        lengths = valid.sum(1).clamp(min=1)
        widths = (2 ** torch.ceil(torch.log2(lengths.double()))).long().clamp(max=L)
        groups = torch.unique(widths).tolist()
        if len(groups) == 1:
            return self.forward(items[:, L - groups[0]:], valid[:, L - groups[0]:])[:, -1]
        out = items.new_zeros(B, items.shape[-1])
        for w in groups:
            rows = (widths == w).nonzero().squeeze(1)
            out = out.index_copy(0, rows, self.forward(items[rows, L - w:], valid[rows, L - w:])[:, -1])
        return out


def split_threads(
    history: torch.Tensor, history_domain: torch.Tensor, target_domain: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Source-only, target-only and mixed threads of a left-padded batch, each left-padded.

    Order inside each thread is kept (a stable sort moves the selected positions to the
    right end); `source` = every non-padding position whose domain is not the target's.
    """
    valid = history != PAD
    is_target = valid & (history_domain == target_domain[:, None])
    threads = {"source": valid & ~is_target, "target": is_target}
    out = {"mixed": history}
    for name, keep in threads.items():
        order = torch.sort(keep.to(torch.int8), dim=1, stable=True).indices
        packed = history.gather(1, order)
        out[name] = packed.masked_fill(~keep.gather(1, order), PAD)
    return out


def truncate(batch_history: torch.Tensor, max_len: int) -> torch.Tensor:
    """The last `max_len` positions (the most recent items) of a left-padded history."""
    return batch_history[:, -max_len:] if batch_history.shape[1] > max_len else batch_history
