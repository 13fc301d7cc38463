"""The model presets compose with the typed config and bad values fail at composition."""

from __future__ import annotations

import pytest

from semacdr_dist.config import load_config
from semacdr_dist.model import MODELS, build_model
from semacdr_dist.model.config import MODEL_NAMES


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_each_preset_composes_and_builds(name, catalog, features):
    cfg = load_config([f"model={name}"]).model
    assert cfg.name == name and set(MODEL_NAMES) == set(MODELS)
    model = build_model(cfg, catalog, features)
    assert type(model) is MODELS[name]


def test_overrides_are_typed_and_checked():
    assert load_config(["model.loss=sampled", "model.fusion=attention"]).model.loss == "sampled"
    with pytest.raises(Exception, match="bogus"):
        load_config(["model.bogus=1"])
    with pytest.raises(Exception, match="model.loss"):
        load_config(["model.loss=focal"])
