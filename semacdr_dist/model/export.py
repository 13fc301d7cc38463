"""Export for the evaluation stage: item vectors of the whole corpus + the user encoder.

`<dir>/item_vectors.safetensors`  item_vectors float32 [N, D], item_domain int8 [N]
`<dir>/user_encoder.safetensors`  the model's state dict without the item tower
`<dir>/config.json`               model config, catalog (n_items, domains), dim, format
Safetensors and JSON only: nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from semacdr_dist.data.catalog import Catalog
from semacdr_dist.model.base import RecModel
from semacdr_dist.model.config import ModelConfig

log = logging.getLogger(__name__)

FORMAT = "semacdr-export/1"
FILES = ("item_vectors.safetensors", "user_encoder.safetensors", "config.json")


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(str(tmp))
    os.replace(tmp, path)


@torch.no_grad()
def save_export(model: RecModel, cfg: ModelConfig, catalog: Catalog, directory: str | os.PathLike) -> dict:
    """Write the three export files (atomically, each) into a local `directory`; returns config.json."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        vectors = model.item_vectors().detach().float().cpu().contiguous()
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
                 if not k.startswith("item_tower.")}
    finally:
        model.train(was_training)
    if vectors.shape[0] != catalog.n_items:
        raise ValueError(f"model has {vectors.shape[0]} item vectors, catalog {catalog.n_items} items")
    item_domain = torch.from_numpy(np.asarray(catalog.item_domain, dtype=np.int8).copy())
    _atomic(out / "item_vectors.safetensors",
            lambda p: save_file({"item_vectors": vectors, "item_domain": item_domain}, p))
    _atomic(out / "user_encoder.safetensors", lambda p: save_file(state, p))
    meta = {"format": FORMAT, "model": dataclasses.asdict(cfg), "catalog": catalog.to_dict(),
            "dim": int(vectors.shape[1]), "trainable_parameters": sum(p.numel() for p in model.parameters())}
    _atomic(out / "config.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    log.info("exported %s: %d item vectors of dim %d to %s", cfg.name, catalog.n_items, vectors.shape[1], out)
    return meta


def load_export(directory: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[RecModel, torch.Tensor]:
    """(model in eval mode, item_vectors [N, D]); the model's item tower is the exported table,
    so `model.user_vectors(batch)` and `model.full_sort_predict(batch)` match the trained model."""
    from semacdr_dist.model import build_model

    src = Path(directory)
    missing = [f for f in FILES if not (src / f).exists()]
    if missing:
        raise FileNotFoundError(f"export {src} lacks {missing}: run the train stage (it writes the export)")
    meta = json.loads((src / "config.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{src}/config.json: format {meta.get('format')!r}, expected {FORMAT!r}")
    tensors = load_file(str(src / "item_vectors.safetensors"))
    vectors, item_domain = tensors["item_vectors"], tensors["item_domain"].numpy()
    catalog = Catalog(meta["catalog"]["n_items"], list(meta["catalog"]["domains"]), item_domain)
    cfg = ModelConfig(**meta["model"])
    model = build_model(cfg, catalog, None, item_table=vectors)
    state = load_file(str(src / "user_encoder.safetensors"))
    result = model.load_state_dict(state, strict=False)
    unexpected = list(result.unexpected_keys)
    missing_keys = [k for k in result.missing_keys if not k.startswith("item_tower.")]
    if unexpected or missing_keys:
        raise ValueError(f"{src}/user_encoder.safetensors does not match model {cfg.name!r}: "
                         f"missing {missing_keys[:5]}, unexpected {unexpected[:5]}")
    model.to(device).eval()
    return model, model.item_vectors()
