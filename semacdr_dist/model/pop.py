"""Popularity per target domain, as a RecModel whose inner products are the counts."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from semacdr_dist.data.catalog import Catalog
from semacdr_dist.model.base import Batch, RecModel
from semacdr_dist.model.config import ModelConfig
from semacdr_dist.model.layers import PAD


class Popularity(RecModel):
    """Fitted by counting (`fit`), not by gradient (`trainable = False`).

    Vectors have one dimension per domain: item i is `(1 + log1p(count_i))·e_domain(i)`,
    a user is `e_target_domain`, so the inner product ranks the target domain's items by
    training popularity and scores every other domain's items 0 (below any target item).
    """

    trainable = False

    def __init__(self, cfg: ModelConfig, catalog: Catalog, features: dict | None = None,
                 item_table: torch.Tensor | None = None):
        super().__init__(cfg, catalog)
        self.register_buffer("counts", torch.zeros(catalog.n_items, dtype=torch.float64))

    def fit(self, batches: Iterable[Batch]) -> Popularity:
        """Count train targets (and history items if `model.pop_count_history`)."""
        counts = torch.zeros_like(self.counts)
        for batch in batches:
            ids = torch.as_tensor(batch["target"]).reshape(-1)
            if self.cfg.pop_count_history:
                hist = torch.as_tensor(batch["history"])
                ids = torch.cat([ids, hist[hist != PAD]])
            counts += torch.bincount(ids.to(torch.long), minlength=self.n_items).to(counts.dtype)
        self.counts.copy_(counts)
        return self

    def encode_items(self, ids: torch.Tensor) -> torch.Tensor:
        score = (1.0 + torch.log1p(self.counts[ids])).float()
        return F.one_hot(self.item_domain[ids], len(self.domains)).float() * score[..., None]

    def item_vectors(self) -> torch.Tensor:
        return self.encode_items(torch.arange(self.n_items, device=self.counts.device))

    def encode_user(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return F.one_hot(batch["target_domain"].long(), len(self.domains)).float(), {}

    def calculate_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise RuntimeError("the popularity model has no gradient training: call model.fit(train_batches)")
