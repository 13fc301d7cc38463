"""Configuration of the evaluate stage (Hydra group `evaluate`)."""

from __future__ import annotations

from dataclasses import dataclass, field

INDEX_TYPES = ("flat", "ivf", "hnsw")
CANDIDATE_SETS = ("target_domain", "all")


@dataclass
class EvalConfig:
    # Ray actors, each holding one contiguous slice of the item corpus in its own FAISS
    # index; 2 shows the sharded path locally without starving the 2-core box.
    num_shards: int = 2
    # CPUs each shard actor requests (and FAISS OpenMP threads it uses); 1 so that
    # 2 shards fit beside the Ray Data user-encoder actors on a 4-CPU local session.
    shard_num_cpus: float = 1.0
    # FAISS index per shard: flat = IndexFlatIP (exact, the default so metrics are exact);
    # ivf = IndexIVFFlat, hnsw = IndexHNSWFlat (approximate, recall against exact is reported).
    index_type: str = "flat"
    # IVF: number of inverted lists per sub-index (clamped to the sub-index size / 39,
    # FAISS's minimum points per centroid); 1024 suits ~1M items per shard.
    ivf_nlist: int = 1024
    # IVF: lists probed per query; 32 of 1024 gives ~0.9+ recall on typical embeddings.
    ivf_nprobe: int = 32
    # HNSW: graph degree M; 32 is FAISS's usual recall/memory trade-off.
    hnsw_m: int = 32
    # HNSW: efSearch (beam width at query time); 128 keeps recall high at K=50.
    hnsw_ef_search: int = 128
    # Queries used to measure recall@K of an approximate index against the exact one
    # (0 = skip); 2000 bounds the extra exact search.
    recall_queries: int = 2000
    # Put shard indices on GPU (faiss-gpu, GPU-enabled wheel); same code, config choice.
    use_gpu: bool = False
    # GPUs each shard actor requests when use_gpu; 1.0 = one GPU per shard.
    gpus_per_shard: float = 1.0
    # Cutoffs; every cutoff is read from one top-max(ks) search.
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 50])
    # Candidates per example: the target domain's items (the cross-domain protocol,
    # default) or the whole corpus.
    candidates: str = "target_domain"
    # Remove the user's history items from the candidates (RecBole's full-sort protocol);
    # a target that repeats a history item then counts as a miss (reported as a count).
    exclude_history: bool = True
    # A user is cold-start in the target domain with at most this many target-domain
    # items in the history (1 = the usual "≤ 1 item" definition).
    cold_start_threshold: int = 1
    # Bootstrap resamples for 95% confidence intervals (0 = none); 1000 is standard.
    bootstrap_samples: int = 1000
    # Negatives per example for the sampled protocol (0 = skip); 100 matches published tables.
    sampled_negatives: int = 100
    # Query vectors sent to the shards per call; 4096 amortises the Ray call overhead.
    query_batch_size: int = 4096
    # Query batches in flight at once (bounds driver memory on big query sets).
    max_inflight_batches: int = 4
    # Ray Data user-encoder actors that compute query vectors (1 fits a 2-core box).
    encoder_actors: int = 1
    # GPUs per user-encoder actor (0 = encode on CPU); queries are computed before the
    # shard actors start, so the two never wait on each other for a GPU.
    encoder_num_gpus: float = 0.0
    # Rows per Ray Data batch for the user encoder.
    encoder_batch_size: int = 512
    # Splits evaluated by the stage (valid for model selection, test for the report).
    splits: list[str] = field(default_factory=lambda: ["valid", "test"])
    # Seed for the bootstrap and the sampled negatives (results are deterministic by it).
    seed: int = 0

    def __post_init__(self) -> None:
        validate_eval_config(self)


def validate_eval_config(cfg: EvalConfig) -> None:
    """Reject settings that would give wrong numbers later instead of failing now."""
    if cfg.index_type not in INDEX_TYPES:
        raise ValueError(f"evaluate.index_type={cfg.index_type!r}: expected one of {INDEX_TYPES}")
    if cfg.candidates not in CANDIDATE_SETS:
        raise ValueError(f"evaluate.candidates={cfg.candidates!r}: expected one of {CANDIDATE_SETS}")
    if cfg.num_shards < 1:
        raise ValueError(f"evaluate.num_shards={cfg.num_shards}: must be >= 1")
    if not cfg.ks or min(cfg.ks) < 1:
        raise ValueError(f"evaluate.ks={cfg.ks}: need at least one cutoff, each >= 1")
    if cfg.query_batch_size < 1 or cfg.max_inflight_batches < 1:
        raise ValueError("evaluate.query_batch_size and evaluate.max_inflight_batches must be >= 1")
    bad = [s for s in cfg.splits if s not in ("train", "valid", "test")]
    if bad:
        raise ValueError(f"evaluate.splits has {bad}: expected train, valid or test")
