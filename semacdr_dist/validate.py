"""Every config value checked when the config is loaded, not when its stage starts.

A value that breaks its rule stops `load_config` with a :class:`ConfigError`
naming the key, the value and the rule (``data.max_history=-5: must be >= 1``),
before Ray starts or a file is touched. String switches are enums in their
package's dataclass (Hydra refuses a bad choice at composition); packages keep
their own detailed checks (model/config.py, evaluate/config.py: each rule in one
place); this module holds the rules that span the tree: signs and ranges of every
number and model names that can never load.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from semacdr_dist.errors import ConfigError

if TYPE_CHECKING:
    from semacdr_dist.config import Config

# Numbers that count or size something: at least 1.
AT_LEAST_ONE = {
    "data.max_history", "data.train_last_n", "data.chunk_rows", "data.synthetic.n_domains",
    "data.synthetic.n_items", "data.synthetic.n_users", "data.synthetic.n_themes",
    "data.synthetic.min_history", "data.synthetic.max_user_themes", "data.synthetic.chunk_items",
    "data.synthetic.chunk_users", "data.synthetic.mean_history",
    "llm.max_model_len", "llm.max_tokens", "llm.batch_size", "llm.max_batches_in_flight",
    "llm.num_engines", "llm.omp_threads", "llm.tensor_parallel_size", "llm.hf_batch_size",
    "llm.repeat_ngram", "llm.echo_ngram", "llm.shard_rows", "llm.kv_block_size",
    "encoder.batch_size", "encoder.num_actors", "encoder.omp_threads", "encoder.max_seq_length",
    "encoder.items_per_call",
    "model.hidden_dim", "model.num_layers", "model.num_heads", "model.max_len",
    "train.num_workers", "train.epochs", "train.batch_size", "train.grad_accum", "train.eval_batch_size",
    "train.valid_every", "train.length_buckets", "train.keep_best_k",
    "ray.num_cpus", "ray.object_store_memory_mb",
}
# evaluate.* bounds (num_shards, ks, batch sizes...) are EvalConfig's own check, run when
# the config is built: one place per rule.
# Numbers with a closed range of their own.
RANGES = {"train.zero_stage": (0, 3)}
# Numbers that must be above 0.
POSITIVE = {"train.lr"}
# Numbers that may be negative (seeds, a test hook whose -1 means "off").
MAY_BE_NEGATIVE = {"seed", "train.seed", "evaluate.seed", "data.synthetic.seed", "train.fail_rank"}
# Shares and probabilities: within [0, 1] (top_p and memory fractions: above 0 too).
UNIT_INTERVAL = {
    "data.synthetic.theme_noise", "data.synthetic.cold_start_share", "model.dropout",
    "llm.min_faithfulness_specific", "llm.min_faithfulness_agnostic", "model.cross_domain_threshold",
}
OPEN_UNIT = {"llm.top_p", "llm.gpu_memory_utilization"}
# String switches typed as plain str in their dataclass. The others are enums (train.precision,
# train.schedule, llm.backend, llm.dtype, encoder.backend, encoder.dtype...): Hydra refuses a
# bad value of those at composition, naming the key and the choices.
PACKAGED_MODELS = {"llm.model": ("smollm2-135m-instruct",),
                   "encoder.model": ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")}


def _leaves(node: Any, prefix: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node


def validate_config(cfg: Config) -> None:
    """Raise :class:`ConfigError` for the first value of ``cfg`` that breaks a rule."""
    tree = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    for key, value in _leaves(tree):
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            if key in AT_LEAST_ONE and value < 1:
                raise ConfigError(key, value, "must be >= 1")
            if key in UNIT_INTERVAL and not 0 <= value <= 1:
                raise ConfigError(key, value, "must be within [0, 1]")
            if key in OPEN_UNIT and not 0 < value <= 1:
                raise ConfigError(key, value, "must be within (0, 1]")
            if key not in MAY_BE_NEGATIVE and value < 0:
                raise ConfigError(key, value, "must be >= 0")
            if key in RANGES and not RANGES[key][0] <= value <= RANGES[key][1]:
                raise ConfigError(key, value, "must be within [{}, {}]".format(*RANGES[key]))
            if key in POSITIVE and value <= 0:
                raise ConfigError(key, value, "must be > 0")
    if cfg.data.source in ("llmcdsr", "tabular") and not (
            cfg.data.path or cfg.data.tabular.items):
        raise ConfigError("data.path", cfg.data.path, f"data.source={cfg.data.source} needs an input directory")
    for key, name in (("llm.model", cfg.llm.model), ("encoder.model", cfg.encoder.model)):
        check_model_name(key, name)


def check_model_name(key: str, name: str) -> None:
    """A model must be packaged, a local directory, or a hub id (org/name); anything else never loads."""
    if name.lower() in {p.lower() for p in PACKAGED_MODELS[key]}:
        return
    if os.path.isdir(os.path.expanduser(name)) or "://" in name:
        return
    if "/" in name and not name.startswith((".", "/", "~")):
        return  # a Hugging Face hub id: the engine reports a missing download with the name
    raise ConfigError(key, name, f"not a packaged model ({', '.join(PACKAGED_MODELS[key])}), an existing "
                                 f"model directory, or a Hugging Face hub id (org/name)")
