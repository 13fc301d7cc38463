"""The typed top-level configuration, registered with Hydra's ConfigStore.

Each stage owns its config dataclass next to its code; this module only
composes them. Because the Hydra tree is validated against these dataclasses,
an unknown or mistyped key fails at composition instead of becoming ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from semacdr_dist.data.config import DataConfig
from semacdr_dist.evaluate.config import EvalConfig
from semacdr_dist.model.config import ModelConfig
from semacdr_dist.runtime import RayConfig
from semacdr_dist.semantics.config import EncoderConfig, LLMConfig
from semacdr_dist.train.config import TrainConfig


@dataclass
class Config:
    run_dir: str = "runs/demo"
    seed: int = 0
    force: bool = False  # redo finished stages instead of skipping them
    models_dir: str = "${oc.env:SEMACDR_MODELS_DIR,${oc.env:HOME}/.cache/semacdr-dist/models}"
    ray: RayConfig = field(default_factory=RayConfig)
    data: DataConfig = field(default_factory=DataConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    # Baselines the pipeline trains and evaluates beside `model` (names of configs/model/*.yaml).
    baselines: list[str] = field(default_factory=list)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)


def to_config(cfg: DictConfig | dict[str, Any]) -> Config:
    """Typed `Config` from a composed DictConfig (interpolations resolved)."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.merge(OmegaConf.structured(Config), cfg)
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def config_dir() -> str:
    """The Hydra config tree: $SEMACDR_CONFIG_DIR, else `configs/` beside the package."""
    import os
    from pathlib import Path

    env = os.environ.get("SEMACDR_CONFIG_DIR")
    if env:
        return str(Path(env).resolve())
    return str(Path(__file__).resolve().parents[1] / "configs")


def load_config(overrides: list[str] | None = None, config_name: str = "config") -> Config:
    """Compose the config tree with Hydra overrides (``["data=food_kitchen", "train.epochs=2"]``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides or []))
    return to_config(cfg)
