"""LLM4CDSR-style baseline (SIGIR 2025, arXiv 2504.18383), the closest public method.

Frozen LLM/text item embeddings, PCA-reduced, through a trainable adapter (+ ID
embedding); a target-domain thread and a mixed thread with separate causal encoders,
summed into the user; an item-level contrastive regulariser (adapted text vector ↔ ID
embedding of the same item) and a user-level one (target thread ↔ mixed thread of the
same user). The paper's user regulariser aligns with an LLM-written user profile, which
this pipeline does not generate; the mixed thread stands in for it. Unlike the public
code, the causal mask is applied.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from semacdr_dist.data.catalog import Catalog
from semacdr_dist.model.base import Batch, RecModel
from semacdr_dist.model.config import ModelConfig
from semacdr_dist.model.item_tower import ItemTower, pca
from semacdr_dist.model.layers import PAD, SequenceEncoder, split_threads, truncate
from semacdr_dist.model.losses import info_nce


class LLM4CDSR(RecModel):
    def __init__(self, cfg: ModelConfig, catalog: Catalog, features: dict[str, np.ndarray] | None = None,
                 item_table: torch.Tensor | None = None):
        super().__init__(cfg, catalog)
        views = None
        if item_table is None:
            if not features or cfg.text_view not in features:
                raise ValueError(f"model 'llm4cdsr' needs the {cfg.text_view!r} feature view (features/); "
                                 f"got {sorted(features or {})}")
            text = features[cfg.text_view]
            views = {"llm": pca(text, cfg.pca_dim) if cfg.pca_dim > 0 else text}
        self.item_tower = self.build_tower(catalog, views, ["llm"], True, item_table)
        self.encoders = nn.ModuleDict({
            t: SequenceEncoder(cfg.hidden_dim, cfg.num_layers, cfg.num_heads, cfg.max_len, cfg.dropout)
            for t in ("target", "mixed")
        })
        self.init_weights()

    def encode_user(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hist = truncate(batch["history"], self.cfg.max_len)
        hdom = truncate(batch["history_domain"], self.cfg.max_len)
        threads = split_threads(hist, hdom, batch["target_domain"])
        out = {}
        for name, enc in self.encoders.items():
            items, valid = self.history_items(threads[name])
            out[name] = enc.last(items, valid)
        has_target = (threads["target"] != PAD).any(1)
        return out["target"] + out["mixed"], {**out, "has_target": has_target}

    def auxiliary_loss(self, batch: Batch, user: torch.Tensor, extras: dict) -> tuple[torch.Tensor, dict[str, float]]:
        tower, c = self.item_tower, self.cfg
        if not isinstance(tower, ItemTower):
            raise RuntimeError("an exported model (frozen item table) is inference-only; train the full model")
        ids = torch.unique(batch["target"])[: c.contrastive_max_items]
        item_reg = info_nce(tower.view("llm", ids), tower.id_emb(ids), c.contrastive_temperature)
        rows = extras["has_target"]
        user_reg = (info_nce(extras["target"][rows], extras["mixed"][rows], c.contrastive_temperature)
                    if int(rows.sum()) > 1 else user.new_zeros(()))
        logs = {"loss/item_contrastive": float(item_reg.detach()), "loss/user_contrastive": float(user_reg.detach())}
        return c.contrastive_weight * item_reg + c.user_contrastive_weight * user_reg, logs
