"""Configuration of the models (Hydra group `model`).

One dataclass for every model: `name` picks the class in `build_model`, and a
model reads only the fields it uses. Defaults are sized to train in seconds on
2 CPU cores for ~2,000 items / ~3,000 users; raise them on a GPU cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MODEL_NAMES = ("semacdr", "sasrec", "sasrec_text", "llm4cdsr", "pop")


@dataclass
class ModelConfig:
    # Which model class `build_model` builds: semacdr | sasrec | sasrec_text | llm4cdsr | pop.
    name: str = "semacdr"

    # --- sizes -------------------------------------------------------------------------------
    # Width of item and user vectors (the exported MIPS dimension); 64 is SASRec's usual size
    # for catalogs of a few thousand items and keeps a CPU step in milliseconds.
    hidden_dim: int = 64
    # Self-attention blocks per sequence encoder; SASRec's paper finds 2 enough.
    num_layers: int = 2
    # Attention heads per block; 2 divides 64 and matches SASRec's small setting.
    num_heads: int = 2
    # History positions the encoder reads (the most recent ones); data.max_history (default 50) caps what prepare keeps.
    max_len: int = 50
    # Dropout in encoders and adapters; 0.2 is SASRec's value for sparse Amazon-like data.
    dropout: float = 0.2
    # Std of the normal init of embeddings and linear layers; 0.02 as in SASRec/BERT.
    init_std: float = 0.02

    # --- item tower --------------------------------------------------------------------------
    # Learn a free ID embedding per item; off turns a text model into a pure content model.
    use_id_embedding: bool = True
    # Frozen feature views (features/ columns) fed through adapters; semacdr uses all three.
    views: list[str] = field(default_factory=lambda: ["content", "specific", "agnostic"])
    # Hidden width of each view adapter MLP; 0 = a single linear map. 128 = 2x hidden, small.
    adapter_hidden: int = 128
    # How the per-item components are fused: sum | concat (concat then project) | attention
    # (a learned query weighs the components per item). sum is the cheapest and a strong default.
    fusion: str = "sum"
    # Add a learned embedding of the item's domain; cheap and lets the tower separate domains.
    domain_embedding: bool = True

    # --- threads and gate (semacdr, llm4cdsr) ------------------------------------------------
    # One encoder for the source/target/mixed threads (True) or three; sharing triples the data
    # each weight sees, which matters on small catalogs.
    share_thread_encoders: bool = True
    # adaptive = learned gate over the thread vectors and thread lengths; mean = uniform weights
    # over non-empty threads (the ablation).
    gate: str = "adaptive"
    # Hidden width of the gate MLP; small because it only outputs three logits.
    gate_hidden: int = 32

    # --- loss --------------------------------------------------------------------------------
    # ce = full softmax over the target-domain catalog (exact; fine up to ~1e5 items);
    # sampled = sampled softmax with logQ correction (large catalogs); bce = one negative
    # (parity with SASRec/LLM4CDSR code).
    loss: str = "ce"
    # Negatives shared by the batch for loss=sampled; 256 keeps the estimate within a few
    # percent of the full softmax on small catalogs at a fraction of the cost on large ones.
    num_negatives: int = 256
    # Proposal for sampled negatives: uniform over items, or popularity (counts^alpha) set by
    # `set_sampling_counts`; logQ correction makes either unbiased for the partition function.
    sampling: str = "uniform"
    # Exponent on counts for the popularity proposal; 0.75 as in word2vec, flattens the head.
    sampling_alpha: float = 0.75

    # --- contrastive regularisers --------------------------------------------------------------
    # lambda: weight of the contrastive term(s) added to the recommendation loss; 0.1 keeps them
    # a regulariser (the recommendation loss dominates), as in LLM4CDSR's tuned range.
    contrastive_weight: float = 0.1
    # InfoNCE temperature; 0.1 is the common choice for normalised vectors (SimCLR-style).
    contrastive_temperature: float = 0.1
    # Views the agnostic view is aligned with (positives = the same item's adapted views).
    contrastive_views: list[str] = field(default_factory=lambda: ["specific", "content"])
    # At most this many distinct batch items enter the contrastive term (cost is quadratic).
    contrastive_max_items: int = 512
    # Also pull together cross-domain items whose raw agnostic vectors are close (cosine >=
    # threshold); off by default because it needs good agnostic views to help.
    cross_domain_pairs: bool = False
    # Cosine on frozen agnostic vectors above which two cross-domain items count as positives.
    cross_domain_threshold: float = 0.8

    # semacdr: centre each frozen view and project it on its top-`view_pca_dim` principal
    # directions before its adapter (0 = the raw vectors). Sentence-encoder vectors share a
    # large common direction; centring removes it so the adapters see what differs between
    # items, as LLM4CDSR's PCA step does.
    view_pca_dim: int = 0
    # semacdr: also divide each principal component by its standard deviation (PCA whitening),
    # so every kept direction starts at the same scale.
    view_whiten: bool = False
    # semacdr: weight of an InfoNCE term aligning each batch item's ID embedding with its
    # fused text vector (the mean of its adapted views), LLM4CDSR's item-level alignment;
    # 0 = off.
    id_text_weight: float = 0.0

    # --- text baselines (sasrec_text, llm4cdsr) ------------------------------------------------
    # The feature column used as the item's text embedding by sasrec_text and llm4cdsr.
    text_view: str = "content"
    # llm4cdsr: PCA dimension of the frozen text embeddings before the adapter (LLM4CDSR reduces
    # LLM embeddings to a small dense size); 0 = no PCA. Clipped to min(d, n_items).
    pca_dim: int = 64
    # llm4cdsr: weight of the user-level contrastive term (target thread vs mixed thread).
    user_contrastive_weight: float = 0.1

    # --- popularity ----------------------------------------------------------------------------
    # pop: also count history items (not only targets); off because consecutive examples of a
    # user repeat the same history and would overweight long-history users.
    pop_count_history: bool = False

    def __post_init__(self) -> None:
        if self.name not in MODEL_NAMES:
            raise ValueError(f"model.name={self.name!r}: expected one of {MODEL_NAMES}")
        choices = {"fusion": ("sum", "concat", "attention"), "gate": ("adaptive", "mean"),
                   "loss": ("ce", "sampled", "bce"), "sampling": ("uniform", "popularity")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"model.{key}={getattr(self, key)!r}: expected one of {allowed}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"model.hidden_dim={self.hidden_dim} must be divisible by num_heads={self.num_heads}")
        for v in list(self.views) + list(self.contrastive_views) + [self.text_view]:
            if v not in ("content", "specific", "agnostic"):
                raise ValueError(f"model view {v!r}: expected content | specific | agnostic")
