"""Configuration of the evaluate stage (Hydra group `evaluate`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    num_shards: int = 2
    use_gpu: bool = False
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 50])
