"""Configuration of the data layer and the prepare stage (Hydra group `data`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    # synthetic | llmcdsr | amazon2018 | amazon2023 | tabular
    source: str = "synthetic"
    # Source-specific options live in the reader's own fields below.
    path: str | None = None
    on_bad_rows: str = "error"  # error | reject
    max_history: int = 50
    train_examples: str = "all"  # all | last_n
    train_last_n: int = 1
    k_core: int = 0
    extra: dict = field(default_factory=dict)
