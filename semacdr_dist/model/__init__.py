"""Models: SemaCDR and the baselines behind one API (`RecModel`), built by `build_model`.

Owns: every model, `ModelConfig`, export/import of a trained model (`export`).
May import: `data` (Catalog, batches) and the foundation modules; no Ray, no DeepSpeed
(plain torch modules, trained by `train/` and loaded by `evaluate/`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from semacdr_dist.data.catalog import Catalog
from semacdr_dist.model.base import RecModel
from semacdr_dist.model.config import ModelConfig
from semacdr_dist.model.llm4cdsr import LLM4CDSR
from semacdr_dist.model.pop import Popularity
from semacdr_dist.model.sasrec import SASRec
from semacdr_dist.model.sasrec_text import SASRecText
from semacdr_dist.model.semacdr import SemaCDR

log = logging.getLogger(__name__)

MODELS: dict[str, type[RecModel]] = {
    "semacdr": SemaCDR,
    "sasrec": SASRec,
    "sasrec_text": SASRecText,
    "llm4cdsr": LLM4CDSR,
    "pop": Popularity,
}

# Models that read features/ (the semantics stage must run before they train).
NEEDS_FEATURES = ("semacdr", "sasrec_text", "llm4cdsr")


def build_model(
    cfg: ModelConfig,
    catalog: Catalog,
    features: dict[str, np.ndarray] | None = None,
    item_table: torch.Tensor | None = None,
) -> RecModel:
    """The model `cfg.name` over `catalog`; `features` = `load_feature_matrices(run, N)`.

    `item_table` ([N, D], from an export) replaces the trainable item tower by frozen
    vectors; that is how `load_export` rebuilds an inference-only model without features.
    """
    if cfg.name not in MODELS:
        raise ValueError(f"model.name={cfg.name!r}: expected one of {sorted(MODELS)}")
    model = MODELS[cfg.name](cfg, catalog, features, item_table)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("built %s: %d trainable parameters, %d items, domains %s", cfg.name, n, catalog.n_items, catalog.domains)
    return model


__all__ = ["MODELS", "NEEDS_FEATURES", "ModelConfig", "RecModel", "build_model"]
