"""The typed top-level configuration, registered with Hydra's ConfigStore.

Each stage owns its config dataclass next to its code; this module only
composes them (and `pipeline` hands each stage its part). Because the Hydra tree
is validated against these dataclasses, an unknown or mistyped key fails at
composition instead of becoming ``None``; every value is then checked against
its rule (`validate`) and every baseline's preset is read, all before a stage
runs. Nothing below this module imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError

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
    reject_unknown_keys(cfg)
    typed: Config = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    from semacdr_dist.validate import validate_config

    validate_config(typed)  # every value checked now, not when its stage starts
    model_configs(typed)  # and every baseline's preset read and checked
    return typed


def model_preset(name: str, max_len: int) -> ModelConfig:
    """``configs/model/<name>.yaml`` over the ModelConfig defaults, with the run's ``max_len``
    (the sequence length is a data property: every model of a run reads the same histories)."""
    from pathlib import Path

    from semacdr_dist.errors import ConfigError

    path = Path(config_dir()) / "model" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError("baselines", name, f"no preset {path} (presets: {', '.join(known)})")
    node = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path))
    reject_unknown_keys(node, "model")
    model: ModelConfig = OmegaConf.to_object(node)  # type: ignore[assignment]
    model.max_len = max_len
    return model


def model_configs(cfg: Config, names: list[str] | None = None) -> dict[str, ModelConfig]:
    """The config of each model a run trains (default: ``model``, then ``baselines``), in order;
    a baseline's config is its preset with the run's ``max_len``, checked like ``model``."""
    import dataclasses

    from semacdr_dist.validate import validate_config

    names = list(dict.fromkeys(names or [cfg.model.name, *cfg.baselines]))
    out = {}
    for name in names:
        if name == cfg.model.name:
            out[name] = cfg.model
            continue
        out[name] = model_preset(name, cfg.model.max_len)
        validate_config(dataclasses.replace(cfg, model=out[name], baselines=[]))
    return out


def reject_unknown_keys(node: Any, path: str = "") -> None:
    """Fail on keys a typed node's dataclass does not declare.

    Hydra's `+key=value` adds keys even to a typed (struct) node, and
    `to_object` would then drop them silently; a typo must fail instead.
    """
    import dataclasses

    if not isinstance(node, DictConfig):
        if isinstance(node, ListConfig):
            for i, item in enumerate(node):
                reject_unknown_keys(item, f"{path}[{i}]")
        return
    schema = OmegaConf.get_type(node)
    if schema is not None and dataclasses.is_dataclass(schema):
        known = {f.name for f in dataclasses.fields(schema)}
        unknown = sorted(set(node.keys()) - known)
        if unknown:
            where = path or "the top level"
            raise ConfigKeyError(
                f"unknown config key(s) {unknown} in {where} ({schema.__name__} has {sorted(known)})"
            )
    for key in node.keys():
        reject_unknown_keys(node._get_node(key), f"{path}.{key}" if path else str(key))


def config_dir() -> str:
    """The Hydra config tree: $SEMACDR_CONFIG_DIR, else `configs/` of a source checkout, else the
    copy an installed wheel ships as `semacdr_dist/conf/`."""
    import os
    from pathlib import Path

    env = os.environ.get("SEMACDR_CONFIG_DIR")
    if env:
        return str(Path(env).resolve())
    here = Path(__file__).resolve().parent
    checkout = here.parent / "configs"
    if (checkout / "config.yaml").is_file():
        return str(checkout)
    packaged = here / "conf"
    if (packaged / "config.yaml").is_file():
        return str(packaged)
    raise FileNotFoundError(f"no config tree: neither {checkout} nor {packaged} has config.yaml "
                            f"(set SEMACDR_CONFIG_DIR)")


def load_config(overrides: list[str] | None = None, config_name: str = "config") -> Config:
    """Compose the config tree with Hydra overrides (``["data=food_kitchen", "train.epochs=2"]``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides or []))
    return to_config(cfg)
