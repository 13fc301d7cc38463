"""Item towers: ID embedding + frozen feature views through adapters, fused per item.

`ItemTower(ids)` gives the fused [*, D] vector of any ids; `ItemTable` is the frozen
lookup an exported model uses instead (the tower's output for every item).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from semacdr_dist.model.layers import Adapter


def pca(x: np.ndarray, dim: int, whiten: bool = False) -> np.ndarray:
    """Project centred rows on their top-`dim` principal directions (deterministic SVD);
    `whiten` scales every component to unit variance."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(0, keepdims=True)
    dim = min(dim, *x.shape)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    # Fix each component's sign (largest |loading| positive) so the result is reproducible.
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    out = centred @ (vt[:dim] * signs[:dim, None]).T
    if whiten:
        out = out / np.maximum(sv[:dim] / np.sqrt(max(len(x) - 1, 1)), 1e-8)
    return out.astype(np.float32)


class ItemTower(nn.Module):
    """Multiview item representation: sum / concat-project / attention over components.

    Components: the ID embedding (optional) and one adapter per frozen view (buffers,
    never trained, not saved in the exported user encoder); a domain embedding is
    added after fusion.
    """

    def __init__(
        self,
        n_items: int,
        item_domain: np.ndarray,
        n_domains: int,
        dim: int,
        views: dict[str, np.ndarray],
        use_id: bool,
        adapter_hidden: int,
        fusion: str,
        domain_embedding: bool,
        dropout: float,
    ):
        super().__init__()
        if not use_id and not views:
            raise ValueError("an item tower needs the ID embedding or at least one feature view")
        self.n_items, self.fusion = n_items, fusion
        self.id_emb = nn.Embedding(n_items, dim) if use_id else None
        self.view_names = list(views)
        self.adapters = nn.ModuleDict()
        for name, mat in views.items():
            mat = np.asarray(mat, dtype=np.float32)
            if mat.ndim != 2 or mat.shape[0] != n_items:
                raise ValueError(f"feature view {name!r} has shape {mat.shape}, expected ({n_items}, d)")
            if not np.isfinite(mat).all():
                raise ValueError(f"feature view {name!r} holds NaN/inf (row {int(np.argwhere(~np.isfinite(mat))[0, 0])})")
            # Frozen and not persistent: features/ is the source of truth, and the export
            # stores the fused item vectors instead of these [N, d] matrices.
            self.register_buffer(f"feat_{name}", torch.from_numpy(mat.copy()), persistent=False)
            self.adapters[name] = Adapter(mat.shape[1], dim, adapter_hidden, dropout)
        k = len(self.view_names) + int(use_id)
        self.project = nn.Linear(k * dim, dim) if fusion == "concat" else None
        self.query = nn.Parameter(torch.zeros(dim)) if fusion == "attention" else None
        self.register_buffer("item_domain", torch.as_tensor(item_domain, dtype=torch.long), persistent=False)
        self.domain_emb = nn.Embedding(n_domains, dim) if domain_embedding else None

    def view(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """The adapted (trainable) vector of one view for `ids`."""
        return self.adapters[name](getattr(self, f"feat_{name}")[ids])

    def raw_view(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"feat_{name}")[ids]

    def components(self, ids: torch.Tensor) -> list[torch.Tensor]:
        parts = [self.id_emb(ids)] if self.id_emb is not None else []
        return parts + [self.view(n, ids) for n in self.view_names]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        parts = self.components(ids)
        if self.fusion == "sum":
            out = torch.stack(parts, 0).sum(0)
        elif self.fusion == "concat":
            out = self.project(torch.cat(parts, -1))
        else:  # attention: per-item softmax over components, scored by a learned query
            stacked = torch.stack(parts, -2)  # [*, K, D]
            w = torch.softmax(stacked @ self.query / stacked.shape[-1] ** 0.5, dim=-1)
            out = (w[..., None] * stacked).sum(-2)
        if self.domain_emb is not None:
            out = out + self.domain_emb(self.item_domain[ids])
        return out

    def all(self, chunk: int = 65536) -> torch.Tensor:
        """Every item's vector [N, D], computed in chunks to bound adapter memory."""
        dev = self.item_domain.device
        return torch.cat([self(torch.arange(s, min(s + chunk, self.n_items), device=dev))
                          for s in range(0, self.n_items, chunk)], 0)


class ItemTable(nn.Module):
    """Frozen item vectors [N, D] (an exported tower); inference only."""

    def __init__(self, vectors: torch.Tensor):
        super().__init__()
        self.register_buffer("vectors", vectors, persistent=False)
        self.n_items = vectors.shape[0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.vectors[ids]

    def all(self) -> torch.Tensor:
        return self.vectors
