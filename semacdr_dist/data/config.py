"""Configuration of the data layer and the prepare stage (Hydra group `data`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from semacdr_dist.errors import as_choice


class Source(StrEnum):
    synthetic = "synthetic"  # the embedded default catalog
    llmcdsr = "llmcdsr"  # LLMCDSR's / C2DSR's released splits (Food-Kitchen)
    amazon2018 = "amazon2018"
    amazon2023 = "amazon2023"
    tabular = "tabular"  # items + interactions files (csv / parquet)


class OnBadRows(StrEnum):
    error = "error"  # stop at the first bad row (file, row, rule)
    reject = "reject"  # write bad rows to rejected/ and go on


class TrainExamples(StrEnum):
    all = "all"  # a train example at every position
    last_n = "last_n"  # only at the last `train_last_n` positions


class Shuffle(StrEnum):
    sort = "sort"
    hash = "hash"


@dataclass
class SyntheticConfig:
    """The embedded synthetic catalog (source=synthetic): needs no files."""

    # Number of domains; names come from `domain_names` (cycled with a suffix past its length).
    n_domains: int = 2
    # Domain names in order; the last one is the target domain of cold-start users.
    domain_names: list[str] = field(default_factory=lambda: ["food", "kitchen", "books", "outdoors"])
    # Items over all domains (~2,000: big enough for a real ranking task, fast on a laptop).
    n_items: int = 2000
    # Users (~3,000 with ~20 events each: ~60k interactions, prepare in seconds).
    n_users: int = 3000
    # Latent themes shared by all domains (the cross-domain signal lives in them).
    n_themes: int = 20
    # Mean history length per user (lognormal); the minimum keeps every user splittable.
    mean_history: float = 20.0
    min_history: int = 3
    # Themes a user likes (1..this); each event picks one of them, or a random theme w.p. `theme_noise`.
    max_user_themes: int = 2
    theme_noise: float = 0.1
    # Popularity skew inside a (domain, theme) block: item rank = size * u**skew (1 = uniform).
    popularity_skew: float = 2.0
    # Share of users who are cold in the target domain (<= 1 target item in their history).
    cold_start_share: float = 0.2
    # Items / users generated per chunk: bounds memory so 10M items never sit in one process.
    chunk_items: int = 100_000
    chunk_users: int = 20_000
    # Seed of the generator; null = the top-level `seed`.
    seed: int | None = None


@dataclass
class AmazonDomainConfig:
    """One domain of an Amazon review dump: a reviews file and a metadata file (JSON lines, .gz ok)."""

    name: str = ""  # domain name used everywhere downstream (e.g. "food")
    reviews: str = ""  # path/URI of the reviews JSON lines
    metadata: str = ""  # path/URI of the metadata JSON lines


@dataclass
class TabularConfig:
    """A parquet or CSV pair already in our schema (source=tabular)."""

    # Items file (ITEMS columns; `item_id` any unique int64), .parquet or .csv; null = <path>/items.*
    items: str | None = None
    # Interactions file (INTERACTIONS columns), .parquet or .csv; null = <path>/interactions.*
    interactions: str | None = None


@dataclass
class DataConfig:
    source: Source = Source.synthetic
    # Input directory for llmcdsr / tabular sources (unused by synthetic and amazon).
    path: str | None = None
    # error: stop at the first bad row (file, row, rule); reject: write bad rows to rejected/.
    on_bad_rows: OnBadRows = OnBadRows.error
    # Most recent items kept per history (50: SASRec's usual length on Amazon data).
    max_history: int = 50
    # Train examples at every position (all) or only at the last `train_last_n` positions (last_n).
    train_examples: TrainExamples = TrainExamples.all
    train_last_n: int = 1
    # Iteratively drop users and items with fewer than k interactions (0 = off; 5 is the usual Amazon choice).
    k_core: int = 0
    # Rows per staged raw shard (bounds driver memory while streaming a dump).
    chunk_rows: int = 250_000
    # Hash partitions of the per-user shuffle (0 = one per ~200k interactions, at least 4).
    num_partitions: int = 0
    # Shuffle of the per-user pass: sort (Ray tasks; cheapest to start, the default on small clusters)
    # or hash (Ray's hash-shuffle aggregator actors; better for very large dumps).
    shuffle: Shuffle = Shuffle.sort
    # Options of the synthetic catalog.
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    # Amazon domains (amazon2018 / amazon2023): any number, order = domain index.
    domains: list[AmazonDomainConfig] = field(default_factory=list)
    # Files of the tabular source.
    tabular: TabularConfig = field(default_factory=TabularConfig)

    def __post_init__(self) -> None:
        self.source = as_choice(Source, self.source, "data.source")
        self.on_bad_rows = as_choice(OnBadRows, self.on_bad_rows, "data.on_bad_rows")
        self.train_examples = as_choice(TrainExamples, self.train_examples, "data.train_examples")
        self.shuffle = as_choice(Shuffle, self.shuffle, "data.shuffle")


@dataclass
class PrepareStageConfig:
    """Everything the prepare stage reads; the pipeline assembles it (`pipeline.prepare_config`)."""

    data: DataConfig = field(default_factory=DataConfig)
    # The run's seed (synthetic catalog, leave-one-out tie breaks).
    seed: int = 0
    # Redo a finished prepare stage (the previous outputs come back if the redo fails).
    force: bool = False
