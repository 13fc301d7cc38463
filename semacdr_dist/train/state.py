"""Run-directory inputs and outputs of the train stage (catalog, features, metrics.jsonl)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from semacdr_dist.data.catalog import Catalog, load_catalog
from semacdr_dist.model.config import ModelConfig
from semacdr_dist.rundir import RunDir


def needs_features(model_cfg: ModelConfig) -> bool:
    """Whether the model's item tower reads the frozen views of features/ (semantics stage)."""
    from semacdr_dist.model import NEEDS_FEATURES

    return model_cfg.name in NEEDS_FEATURES


def check_features(run: RunDir, model_cfg: ModelConfig) -> None:
    """Fail before starting workers when a feature model has no features/ to read."""
    if needs_features(model_cfg) and not run.list_files("features"):
        raise FileNotFoundError(
            f"model {model_cfg.name!r} needs frozen item features, but {run.uri_of('features')} "
            "holds no parquet shards: run the semantics stage first (or train model=sasrec / pop)"
        )


def load_inputs(run: RunDir, with_features: bool) -> tuple[Catalog, dict[str, np.ndarray] | None]:
    """The catalog and, for feature models, the frozen [N, d] views in item_id order."""
    catalog = load_catalog(run)
    if not with_features:
        return catalog, None
    from semacdr_dist.semantics.features import load_feature_matrices

    return catalog, load_feature_matrices(run, catalog.n_items)


def metrics_path(model_name: str) -> str:
    return f"train/{model_name}/metrics.jsonl"


def read_metrics(run: RunDir, model_name: str) -> list[dict[str, Any]]:
    rel = metrics_path(model_name)
    if not run.exists(rel):
        return []
    return [json.loads(line) for line in run.read_bytes(rel).decode().splitlines() if line.strip()]


def append_metrics(run: RunDir, model_name: str, record: dict[str, Any]) -> None:
    """Add one epoch's record; an epoch re-run after a restart replaces its earlier line."""
    kept = [r for r in read_metrics(run, model_name) if r.get("epoch", -1) < record["epoch"]]
    lines = [json.dumps(r, default=float) for r in [*kept, record]]
    run.write_bytes(metrics_path(model_name), ("\n".join(lines) + "\n").encode())
