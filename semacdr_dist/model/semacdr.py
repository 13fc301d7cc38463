"""SemaCDR: multiview item tower + contrastive alignment + three gated sequence threads."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from semacdr_dist.data.catalog import Catalog
from semacdr_dist.model.base import Batch, RecModel
from semacdr_dist.model.config import ModelConfig
from semacdr_dist.model.gate import THREADS, ThreadGate
from semacdr_dist.model.item_tower import ItemTower, pca
from semacdr_dist.model.layers import PAD, SequenceEncoder, split_threads, truncate
from semacdr_dist.model.losses import info_nce, multi_positive_nce


class SemaCDR(RecModel):
    """Items: ID + content/specific/agnostic adapters fused (`model.fusion`). Users: the
    source-only, target-only and mixed threads (relative to each example's target domain),
    each through a causal encoder (shared or not), fused by `ThreadGate`. Loss: the
    recommendation loss + λ·InfoNCE(agnostic ↔ specific/content of the same item)."""

    def __init__(self, cfg: ModelConfig, catalog: Catalog, features: dict[str, np.ndarray] | None = None,
                 item_table: torch.Tensor | None = None):
        super().__init__(cfg, catalog)
        if features is not None and item_table is None and cfg.view_pca_dim > 0:
            features = {v: pca(features[v], cfg.view_pca_dim, cfg.view_whiten) if v in cfg.views else m
                        for v, m in features.items()}
        self.item_tower = self.build_tower(catalog, features, list(cfg.views), cfg.use_id_embedding, item_table)
        n_enc = 1 if cfg.share_thread_encoders else 3
        self.encoders = nn.ModuleList(
            SequenceEncoder(cfg.hidden_dim, cfg.num_layers, cfg.num_heads, cfg.max_len, cfg.dropout)
            for _ in range(n_enc)
        )
        self.gate = ThreadGate(cfg.hidden_dim, cfg.gate_hidden, cfg.gate)
        self.init_weights()

    def thread_vectors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, D] last-position outputs of the source/target/mixed threads, and lengths [B, 3]."""
        hist = truncate(batch["history"], self.cfg.max_len)
        hdom = truncate(batch["history_domain"], self.cfg.max_len)
        threads = split_threads(hist, hdom, batch["target_domain"])
        # Every distinct history item goes through the tower once, shared by the threads.
        uniq = torch.unique(hist[hist != PAD])
        emb = self.encode_items(uniq)
        ids = torch.stack([threads[t] for t in THREADS], 0)  # [3, B, L]
        valid = ids != PAD
        vecs = emb.new_zeros(*ids.shape, emb.shape[-1])
        vecs[valid] = emb[torch.searchsorted(uniq, ids[valid])]
        B, L = hist.shape
        if len(self.encoders) == 1:  # one pass over the three threads stacked on the batch axis
            out = self.encoders[0].last(vecs.reshape(3 * B, L, -1), valid.reshape(3 * B, L)).view(3, B, -1)
        else:
            out = torch.stack([enc.last(vecs[i], valid[i]) for i, enc in enumerate(self.encoders)], 0)
        return out.transpose(0, 1), valid.sum(-1).T

    def encode_user(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        vectors, lengths = self.thread_vectors(batch)
        user, weights = self.gate(vectors, lengths)
        return user, {"gate_weights": weights, "thread_lengths": lengths}

    def auxiliary_loss(self, batch: Batch, user: torch.Tensor, extras: dict) -> tuple[torch.Tensor, dict[str, float]]:
        w, lengths = extras["gate_weights"].detach(), extras["thread_lengths"]
        logs = {f"gate/{t}": float(w[:, i].mean()) for i, t in enumerate(THREADS)}
        cold = lengths[:, 1] == 0
        if cold.any():  # what users without target-domain history lean on
            logs.update({f"gate_cold/{t}": float(w[cold, i].mean()) for i, t in enumerate(THREADS)})
        aux = user.new_zeros(())
        if self.cfg.contrastive_weight > 0 and "agnostic" in self.cfg.views:
            con = self.contrastive_loss(batch)
            logs["loss/contrastive"] = float(con.detach())
            aux = aux + self.cfg.contrastive_weight * con
        if self.cfg.id_text_weight > 0 and self.cfg.use_id_embedding and self.cfg.views:
            align = self.id_text_loss(batch)
            logs["loss/id_text"] = float(align.detach())
            aux = aux + self.cfg.id_text_weight * align
        return aux, logs

    def _batch_items(self, batch: Batch) -> torch.Tensor:
        """Distinct target and history items of the batch, at most `contrastive_max_items`."""
        hist = batch["history"]
        ids = torch.unique(torch.cat([batch["target"], hist[hist != PAD]]))
        if len(ids) > self.cfg.contrastive_max_items:
            ids = ids[torch.randperm(len(ids), device=ids.device)[: self.cfg.contrastive_max_items]]
        return ids

    def id_text_loss(self, batch: Batch) -> torch.Tensor:
        """InfoNCE between each batch item's ID embedding and the mean of its adapted text views
        (in-batch negatives): the ID and text spaces describe the same item."""
        tower = self.item_tower
        if not isinstance(tower, ItemTower):
            raise RuntimeError("an exported model (frozen item table) is inference-only; train the full model")
        ids = self._batch_items(batch)
        text = torch.stack([tower.view(v, ids) for v in tower.view_names], 0).mean(0)
        return info_nce(tower.id_emb(ids), text, self.cfg.contrastive_temperature)

    def contrastive_loss(self, batch: Batch) -> torch.Tensor:
        """InfoNCE between each batch item's agnostic view and its specific/content views
        (in-batch negatives), plus optionally cross-domain agnostic-neighbour pairs."""
        tower = self.item_tower
        if not isinstance(tower, ItemTower):
            raise RuntimeError("an exported model (frozen item table) is inference-only; train the full model")
        ids = self._batch_items(batch)
        z_agn = tower.view("agnostic", ids)
        views = [v for v in self.cfg.contrastive_views if v in tower.view_names and v != "agnostic"]
        terms = [info_nce(z_agn, tower.view(v, ids), self.cfg.contrastive_temperature) for v in views]
        if self.cfg.cross_domain_pairs:
            raw = nn.functional.normalize(tower.raw_view("agnostic", ids), dim=-1)
            dom = self.item_domain[ids]
            close = (raw @ raw.T >= self.cfg.cross_domain_threshold) & (dom[:, None] != dom[None, :])
            terms.append(multi_positive_nce(z_agn, close, self.cfg.contrastive_temperature))
        return torch.stack(terms).mean() if terms else z_agn.sum() * 0.0
