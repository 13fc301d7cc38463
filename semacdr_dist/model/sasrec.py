"""SASRec on item IDs over the mixed (all-domain) history: the sequential baseline."""

from __future__ import annotations

import numpy as np
import torch

from semacdr_dist.data.catalog import Catalog
from semacdr_dist.model.base import Batch, RecModel
from semacdr_dist.model.config import ModelConfig
from semacdr_dist.model.layers import SequenceEncoder


class SASRec(RecModel):
    """One causal encoder over the mixed history; the user is its last output.

    `views()` lets `SASRecText` reuse it with frozen text vectors in the tower.
    """

    def __init__(self, cfg: ModelConfig, catalog: Catalog, features: dict[str, np.ndarray] | None = None,
                 item_table: torch.Tensor | None = None):
        super().__init__(cfg, catalog)
        self.item_tower = self.build_tower(catalog, features, self.views(), cfg.use_id_embedding or not self.views(),
                                           item_table)
        self.encoder = SequenceEncoder(cfg.hidden_dim, cfg.num_layers, cfg.num_heads, cfg.max_len, cfg.dropout)
        self.init_weights()

    def views(self) -> list[str]:
        return []

    def encode_user(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        items, valid = self.history_items(batch["history"])
        return self.encoder.last(items, valid), {}
