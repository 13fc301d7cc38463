"""benchmarks/quality.py's extra metrics from an export: sampled-999 ranking and gate weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from semacdr_dist.data.catalog import load_catalog
from semacdr_dist.model import build_model
from semacdr_dist.model.config import ModelConfig
from semacdr_dist.model.export import save_export
from semacdr_dist.train.state import load_inputs

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import quality  # noqa: E402


def test_extra_metrics_sampled999_and_gate_weights(tmp_path, make_run):
    run = make_run(tmp_path / "run")
    cfg = ModelConfig(name="semacdr", hidden_dim=16, num_layers=1, max_len=12, adapter_hidden=0,
                      view_pca_dim=8, view_whiten=True)
    catalog, features = load_inputs(run, True)
    save_export(build_model(cfg, catalog, features), cfg, load_catalog(run), run.local_path("export", "semacdr"))
    out = quality.extra_metrics(run, "semacdr", catalog.domains, 12, seed=0)
    for key in ("test/sampled999/ndcg@10", "test/sampled999/hr@10", "test/sampled999/books/hr@10"):
        assert 0.0 <= out[key] <= 1.0
    # the domains hold 60 items: every target is ranked among its whole (untouched) domain
    assert out["test/sampled999/hr@10"] > 0
    for group in ("cold", "warm"):
        ws = [out[f"gate/{group}/{t}"] for t in ("source", "target", "mixed")]
        if out["gate/cold/n"] > 0 or group == "warm":
            assert sum(ws) == pytest.approx(1.0, abs=1e-5)
    assert run.exists("eval/semacdr/extra.json")
    assert quality.extra_metrics(run, "semacdr", catalog.domains, 12, seed=0) == out  # read back, not redone
