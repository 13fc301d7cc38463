"""`RecModel`: the one small API that training, evaluation and tests share.

A subclass sets `self.item_tower` (ids → [*, D]) and implements
`encode_user(batch) -> (user [B, D], logs)`; scores are inner products of user and
item vectors, so retrieval over `item_vectors()` is exact maximum inner product search.
The recommendation loss is cross-entropy over the example's target-domain catalog
(`model.loss=ce`), sampled softmax with logQ correction (`sampled`) or BCE with one
negative (`bce`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from semacdr_dist.data.catalog import Catalog
from semacdr_dist.model.config import ModelConfig
from semacdr_dist.model.item_tower import ItemTable, ItemTower
from semacdr_dist.model.layers import PAD, truncate
from semacdr_dist.model.losses import bce_loss, full_softmax_loss, sampled_softmax_loss

Batch = dict[str, torch.Tensor]


class RecModel(nn.Module):
    # False for models fitted by counting (`fit`), not by gradient steps.
    trainable: bool = True

    def __init__(self, cfg: ModelConfig, catalog: Catalog):
        super().__init__()
        self.cfg = cfg
        n_items = catalog.n_items
        self.n_items, self.domains = n_items, list(catalog.domains)
        dom = torch.as_tensor(np.asarray(catalog.item_domain), dtype=torch.long)
        self.register_buffer("item_domain", dom, persistent=False)
        # Per-domain item lists, padded, to sample negatives inside an example's target domain.
        counts = torch.bincount(dom, minlength=len(self.domains))
        table = torch.full((len(self.domains), max(int(counts.max()), 1)), 0, dtype=torch.long)
        for d in range(len(self.domains)):
            ids = torch.nonzero(dom == d).flatten()
            table[d, : len(ids)] = ids
        self.register_buffer("domain_items", table, persistent=False)
        self.register_buffer("domain_counts", counts, persistent=False)
        self.register_buffer("sampling_logq", torch.full((n_items,), -float(np.log(n_items))), persistent=False)
        self.item_tower: nn.Module | None = None

    def build_tower(self, catalog: Catalog, features: dict[str, np.ndarray] | None,
                    views: list[str], use_id: bool, item_table: torch.Tensor | None) -> nn.Module:
        """The trainable multiview tower, or the frozen table of an exported model."""
        if item_table is not None:
            return ItemTable(item_table)
        missing = [v for v in views if features is None or v not in features]
        if missing:
            raise ValueError(
                f"model {self.cfg.name!r} needs feature views {missing} (features/ of the semantics "
                f"stage); got {sorted(features or {})}. Run the semantics stage or set model.views."
            )
        c = self.cfg
        return ItemTower(catalog.n_items, catalog.item_domain, len(catalog.domains), c.hidden_dim,
                         {v: features[v] for v in views}, use_id, c.adapter_hidden, c.fusion,
                         c.domain_embedding, c.dropout)

    def init_weights(self) -> None:
        """Normal(0, init_std) for linear and embedding weights, zero biases (SASRec/BERT)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=self.cfg.init_std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    # --- what subclasses implement -------------------------------------------------------------
    def encode_user(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    # --- the shared API -------------------------------------------------------------------------
    def encode_items(self, ids: torch.Tensor) -> torch.Tensor:
        return self.item_tower(ids)

    def item_vectors(self) -> torch.Tensor:
        """Every item of every domain, [N, D]."""
        return self.item_tower.all()

    def user_vectors(self, batch: Batch) -> torch.Tensor:
        return self.encode_user(batch)[0]

    def predict(self, batch: Batch, items: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(batch) @ self.encode_items(items).T

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return self.user_vectors(batch) @ self.item_vectors().T

    def calculate_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        user, extras = self.encode_user(batch)
        rec = self.recommendation_loss(user, batch)
        aux, logs = self.auxiliary_loss(batch, user, extras)
        loss = rec + aux
        logs = {"loss/rec": float(rec.detach()), **logs, "loss/total": float(loss.detach())}
        return loss, logs

    def auxiliary_loss(self, batch: Batch, user: torch.Tensor, extras: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Regularisers on top of the recommendation loss (none by default); also turns
        `extras` into logged floats."""
        logs = {k: float(v.detach().float().mean()) for k, v in extras.items() if v.numel()}
        return user.new_zeros(()), logs

    # --- helpers --------------------------------------------------------------------------------
    def history_items(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Item vectors of a left-padded history ([B, L, D], padding zeroed) and its valid mask."""
        history = truncate(history, self.cfg.max_len)
        valid = history != PAD
        # Each distinct item goes through the tower once per batch.
        uniq, inverse = torch.unique(history[valid], return_inverse=True)
        emb = self.encode_items(uniq)
        vecs = emb.new_zeros(*history.shape, emb.shape[-1])
        vecs[valid] = emb[inverse]
        return vecs, valid

    def set_sampling_counts(self, counts: np.ndarray) -> None:
        """Popularity proposal for `loss=sampled`, `sampling=popularity`: q ∝ (count+1)^alpha."""
        c = torch.as_tensor(np.asarray(counts, dtype=np.float64) + 1.0) ** self.cfg.sampling_alpha
        self.sampling_logq.copy_(torch.log(c / c.sum()).float())

    def sample_in_domain(self, domains: torch.Tensor) -> torch.Tensor:
        """One uniform item of each given domain (for BCE negatives)."""
        r = torch.rand(domains.shape, device=domains.device)
        idx = (r * self.domain_counts[domains]).long()
        return self.domain_items[domains, idx]

    def recommendation_loss(self, user: torch.Tensor, batch: Batch) -> torch.Tensor:
        target, tdom = batch["target"], batch["target_domain"]
        loss = self.cfg.loss
        if loss == "ce":
            allowed = self.item_domain[None, :] == tdom[:, None]
            return full_softmax_loss(user, self.item_vectors(), target, allowed)
        if loss == "bce":
            neg = self.sample_in_domain(tdom)
            # An accidental hit (negative == target) is moved to the next item of the domain.
            hit = neg == target
            if hit.any():
                neg = torch.where(hit, self.sample_in_domain(tdom), neg)
            return bce_loss(user, self.encode_items(target), self.encode_items(neg))
        # sampled: K shared negatives from q (uniform or popularity), logQ-corrected.
        k = self.cfg.num_negatives
        if self.cfg.sampling == "uniform":
            neg_ids = torch.randint(0, self.n_items, (k,), device=user.device)
        else:
            neg_ids = torch.multinomial(self.sampling_logq.exp(), k, replacement=True)
        vecs = self.encode_items(torch.cat([target, neg_ids]))
        allowed = self.item_domain[neg_ids][None, :] == tdom[:, None]
        return sampled_softmax_loss(user, vecs[: len(target)], target, vecs[len(target):],
                                    neg_ids, self.sampling_logq[neg_ids], allowed)
