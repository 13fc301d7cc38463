"""The typed Hydra tree: every preset composes, unknown keys fail at composition."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from semacdr_dist.config import Config, config_dir, load_config

GROUPS = ("data", "llm", "encoder", "model", "train", "evaluate", "cluster")


def presets() -> list[tuple[str, str]]:
    root = Path(config_dir())
    return [(g, p.stem) for g in GROUPS for p in sorted((root / g).glob("*.yaml"))]


def test_default_config_composes():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.data.source == "synthetic"
    assert cfg.ray.address is None and cfg.ray.num_cpus >= 4


@pytest.mark.parametrize(("group", "option"), presets())
def test_every_preset_composes(group: str, option: str):
    load_config([f"{group}={option}"])


def test_unknown_key_fails_at_composition():
    with pytest.raises(ConfigCompositionException):
        load_config(["train.epochz=3"])


def test_wrong_type_fails_at_composition():
    with pytest.raises(ConfigCompositionException):
        load_config(["seed=not-a-number"])


def test_override_reaches_the_typed_config():
    cfg = load_config(["train.num_workers=3", "run_dir=/tmp/x"])
    assert cfg.train.num_workers == 3 and cfg.run_dir == "/tmp/x"


def test_added_unknown_key_fails_too():
    """`+key=value` adds keys even to a typed node; they must fail, not vanish."""
    from omegaconf.errors import ConfigKeyError

    with pytest.raises(ConfigKeyError, match="zero_stag"):
        load_config(["+train.zero_stag=2"])
