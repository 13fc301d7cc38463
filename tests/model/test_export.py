"""save_export / load_export: safetensors + JSON only, and the reloaded model is exact."""

from __future__ import annotations

import json

import pytest
import torch
from model_testkit import make_batch, small_cfg
from safetensors.torch import load_file

from semacdr_dist.model import MODELS, build_model
from semacdr_dist.model.export import FILES, load_export, save_export


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_export_is_exact(name, catalog, features, tmp_path):
    torch.manual_seed(0)
    cfg = small_cfg(name, dropout=0.1)
    model = build_model(cfg, catalog, features)
    batch = make_batch(catalog, 16, seed=5)
    if name == "pop":
        model.fit([batch])
    else:  # a few steps so the weights are not the init
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(3):
            opt.zero_grad()
            model.calculate_loss(batch)[0].backward()
            opt.step()
    model.train()  # save_export must switch dropout off itself
    meta = save_export(model, cfg, catalog, tmp_path / name)
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == sorted(FILES)
    assert json.loads((tmp_path / name / "config.json").read_text()) == meta
    assert model.training  # and restore the mode

    loaded, item_vectors = load_export(tmp_path / name)
    model.eval()
    with torch.no_grad():
        assert torch.equal(item_vectors, model.item_vectors())
        saved = load_file(str(tmp_path / name / "item_vectors.safetensors"))
        assert saved["item_domain"].tolist() == catalog.item_domain.tolist()
        expected_user = model.user_vectors(batch)
        got_user = loaded.user_vectors(batch)
        # The reloaded encoder reads history items from the exported table instead of running
        # the tower on them; the same float ops on a different batch shape agree to rounding.
        torch.testing.assert_close(got_user, expected_user, rtol=0, atol=1e-6)
        torch.testing.assert_close(loaded.full_sort_predict(batch), model.full_sort_predict(batch),
                                   rtol=0, atol=1e-5)
    for key, value in model.state_dict().items():
        if not key.startswith("item_tower."):
            assert torch.equal(loaded.state_dict()[key], value), key
    assert loaded.cfg == cfg and not loaded.training


def test_load_export_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="item_vectors.safetensors"):
        load_export(tmp_path)


def test_exported_model_is_inference_only(catalog, features, tmp_path):
    cfg = small_cfg("semacdr")
    save_export(build_model(cfg, catalog, features), cfg, catalog, tmp_path)
    loaded, _ = load_export(tmp_path)
    with pytest.raises(RuntimeError, match="inference-only"):
        loaded.calculate_loss(make_batch(catalog, 4))
