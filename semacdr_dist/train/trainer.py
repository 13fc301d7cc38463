"""The Ray Train `TorchTrainer` of one model: data, scaling, storage, failures.

Storage is the run directory's `checkpoints/` with the model's name as the
Ray Train run name, so a second `fit()` of the same model (after the driver
died) finds the checkpoint manager's snapshot there and resumes from the
latest checkpoint instead of starting over.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from semacdr_dist.model.config import ModelConfig
from semacdr_dist.rundir import RunDir
from semacdr_dist.train.config import TrainConfig
from semacdr_dist.train.deepspeed_config import render_deepspeed_config, total_optimizer_steps
from semacdr_dist.train.loop import train_loop_per_worker
from semacdr_dist.train.state import check_features, needs_features

log = logging.getLogger(__name__)

SEQUENCE_COLUMNS = ["user_id", "target_domain", "history", "history_domain", "target"]
# The train workers' allocator. glibc's default raises its mmap threshold after the first large
# free; batch tensors of ever-changing shape then come from the heap and fragment it (a
# Food-Kitchen worker grew ~1 GB per epoch). A small fixed threshold (1 MB) stopped the growth
# but mmaps and zero-fills every large tensor on every step: 39% of the worker's CPU went to page
# faults and SemaCDR trained at 0.62x (722 vs 1,178 seq/s, 1 thread, batch 512, Xeon with AMX).
# jemalloc, which Ray ships, reuses freed pages by size class: 1,235 seq/s (1.05x glibc's
# default, 0 page faults in steady state) at a lower peak RSS (1.62 vs 1.64 GB). Freed pages go
# back to the OS after 1 s unused: with decay off (kept forever) a full-shuffle Food-Kitchen run
# (random batch composition, length-grouped encoder shapes) grew ~1.3 GB of anonymous memory per
# epoch until Ray's OOM killer fired. Measured (SemaCDR, 1 thread, batch 512 from length-sorted
# random draws, 300 steps, Xeon with AMX): decay off 2,590 seq/s, RSS 2.3 -> 4.4 GB; decay 1 s
# 2,100, flat 0.97 GB; decay 10 s 2,120, flat 1.0 GB; glibc default 2,160, 1.54 -> 1.75 GB.
JEMALLOC_CONF = "dirty_decay_ms:1000,muzzy_decay_ms:0"
# Where Ray's jemalloc is missing (no Linux wheel): glibc with a fixed threshold above the
# batch tensors (no per-step mmap) and no trimming (no per-step page faults).
GLIBC_MALLOC_ENV = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": str(64 << 20),
                    "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def worker_malloc_env() -> dict[str, str]:
    """Environment that picks the train workers' allocator; the driver's environment wins.

    The jemalloc path is the driver's Ray install: nodes of one cluster share an image.
    A node without the file only warns (the loader ignores a missing LD_PRELOAD).
    """
    import ray

    jemalloc = os.path.join(os.path.dirname(ray.__file__), "core", "libjemalloc.so")
    env = {"LD_PRELOAD": jemalloc, "MALLOC_CONF": JEMALLOC_CONF} if os.path.exists(jemalloc) else GLIBC_MALLOC_ENV
    return {k: os.environ.get(k, v) for k, v in env.items()}


def train_dataset(run: RunDir):
    """The train split as a Ray Dataset streamed from `sequences/train/` parquet."""
    import ray.data

    files = run.list_files("sequences", "train")
    if not files:
        raise FileNotFoundError(f"no parquet shards under {run.uri_of('sequences', 'train')}: run prepare first")
    return ray.data.read_parquet(
        [run.path("sequences", "train", f) for f in files], filesystem=run.fs, columns=SEQUENCE_COLUMNS
    )


def backend_of(tcfg: TrainConfig) -> str:
    return str(tcfg.backend) if tcfg.backend else ("nccl" if tcfg.use_gpu else "gloo")


def loop_config(
    run: RunDir, model_cfg: ModelConfig, tcfg: TrainConfig, n_train: int, seed: int, name: str | None = None,
) -> dict[str, Any]:
    """Everything `train_loop_per_worker` reads, including the rendered DeepSpeed dict."""
    steps = total_optimizer_steps(tcfg, n_train, tcfg.num_workers)
    return {
        "run_uri": run.uri,
        "run_name": name or model_cfg.name,
        "model": model_cfg,
        "train": tcfg,
        "deepspeed": render_deepspeed_config(tcfg, tcfg.num_workers, steps),
        "max_len": model_cfg.max_len,
        "seed": seed + tcfg.seed,
        "with_features": needs_features(model_cfg),
    }


def build_trainer(
    run: RunDir, model_cfg: ModelConfig, tcfg: TrainConfig, seed: int = 0, name: str | None = None,
    resume_from=None,
):
    """A TorchTrainer for `model_cfg` on the run's train split (not started).

    `name` (default: the model's name) names the Ray Train run under `checkpoints/`
    and the `train/<name>/` directory; `resume_from` (a Checkpoint or a local checkpoint
    path) starts a new run from another run's checkpoint (warm start).
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    check_features(run, model_cfg)
    dataset = train_dataset(run)
    n_train = dataset.count()
    name = name or model_cfg.name
    config = loop_config(run, model_cfg, tcfg, n_train, seed, name)
    if resume_from is not None:  # Train V2: the loop loads it when the run has no checkpoint yet
        config["resume_from"] = resume_from if isinstance(resume_from, str) else resume_from.path
    run.write_json(f"train/{name}/deepspeed.json", config["deepspeed"])
    log.info("train %s: %d train sequences, %d workers, backend %s, ZeRO-%d, %s", name, n_train,
             tcfg.num_workers, backend_of(tcfg), tcfg.zero_stage, tcfg.precision)
    run_config = ray.train.RunConfig(
        name=name,
        storage_path=run.path("checkpoints"),
        storage_filesystem=run.fs,
        failure_config=ray.train.FailureConfig(max_failures=tcfg.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=tcfg.keep_best_k, checkpoint_score_attribute=tcfg.monitor, checkpoint_score_order="max"
        ),
        worker_runtime_env={"env_vars": {
            "DS_ACCELERATOR": "cuda" if tcfg.use_gpu else "cpu",
            **worker_malloc_env(),
        }},
    )
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        torch_config=TorchConfig(backend=backend_of(tcfg)),
        scaling_config=ray.train.ScalingConfig(
            num_workers=tcfg.num_workers, use_gpu=tcfg.use_gpu, resources_per_worker=dict(tcfg.resources_per_worker)
        ),
        run_config=run_config,
        datasets={"train": dataset},
    )


def best_checkpoint(result, monitor: str):
    """The reported checkpoint with the highest `monitor` (the latest if none was scored)."""
    scored = [(c, m) for c, m in (result.best_checkpoints or []) if m.get(monitor) is not None]
    if scored:
        return max(scored, key=lambda cm: cm[1][monitor])
    if result.checkpoint is None:
        raise RuntimeError(f"training reported no checkpoint (error: {result.error})")
    return result.checkpoint, result.metrics or {}
