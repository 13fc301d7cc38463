"""Configuration of the models (Hydra group `model`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    name: str = "semacdr"  # semacdr | sasrec | sasrec_text | llm4cdsr | pop
    hidden_dim: int = 64
