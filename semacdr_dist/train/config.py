"""Configuration of the train stage (Hydra group `train`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    num_workers: int = 2
    use_gpu: bool = False
    epochs: int = 5
    batch_size: int = 128
