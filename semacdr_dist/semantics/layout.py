"""How many generation engines, with how many threads each: chosen from the hardware.

A plain function of what Ray offers and what the host has, so the rule is
testable and the stage report can say why it chose what it chose.

The rule on CPUs, from measurements on 2-core boxes (benchmarks/semantics.py
re-measures it on the machine at hand): a small model decodes at least as fast as
several one-thread engines as it does as one multi-thread engine (SmolLM2-135M,
bf16 on a CPU with native bf16: two 1-thread engines 227 tok/s, one 2-thread
engine 97; float32 without native bf16: 105 vs 97), because batch-64 matmuls of a
576-wide model scale poorly past one core while independent engines do not share
anything. So one engine per core, capped by memory (each engine holds its weights and KV cache) and by
the work (an engine without a batch only costs its start-up); the cores left
over go to the engines as threads. On GPUs: one engine per tensor-parallel group.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from semacdr_dist.semantics.config import LLMConfig

GIB = 1024**3
# Per-engine memory beyond weights + KV cache: the Python process with torch, vLLM,
# the tokenizer and the faithfulness encoder (measured ~1.2 GiB RSS on CPU).
ENGINE_OVERHEAD_BYTES = int(1.3 * GIB)


@dataclass(frozen=True)
class EngineLayout:
    num_engines: int
    threads: int
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def weights_bytes(model_path: str, dtype: str) -> int:
    """Bytes of the model's weights at ``dtype`` (from its safetensors files' sizes)."""
    files = list(Path(model_path).glob("*.safetensors")) if os.path.isdir(model_path) else []
    stored = sum(f.stat().st_size for f in files)
    if not stored:
        return 0
    # Our converted models are stored in bf16 (2 bytes per parameter).
    per_param = {"float32": 4, "bfloat16": 2, "float16": 2}.get(dtype, 2)
    return stored // 2 * per_param


def engine_layout(
    cfg: LLMConfig,
    *,
    ray_cpus: float,
    host_cores: int | None,
    ray_gpus: float = 0.0,
    items: int | None = None,
    engine_bytes: int = 0,
    available_bytes: int | None = None,
) -> EngineLayout:
    """Engines and threads for ``cfg``; explicit ``num_engines`` / ``omp_threads`` win.

    ``host_cores``: the physical cores of a single-node cluster (a local Ray may
    advertise more CPUs than it has, to fit two train workers on two cores); None on
    a multi-node cluster. ``engine_bytes``: memory of one engine (weights + KV cache +
    process); ``available_bytes``: memory free for engines.
    """
    why: list[str] = []
    if cfg.use_gpu:
        n = cfg.num_engines or max(1, int(ray_gpus // max(cfg.tensor_parallel_size, 1)))
        if not cfg.num_engines:
            why.append(f"{ray_gpus:g} GPUs / tensor_parallel_size {cfg.tensor_parallel_size}")
        return EngineLayout(n, cfg.omp_threads or 1, "; ".join(why) or "set explicitly")
    cores = int(ray_cpus)
    if host_cores is not None and host_cores < cores:
        why.append(f"{host_cores} host cores (Ray advertises {ray_cpus:g} CPUs)")
        cores = host_cores
    else:
        why.append(f"{cores} Ray CPUs")
    cores = max(cores, 1)
    if cfg.num_engines:
        n = cfg.num_engines
        why.append(f"{n} engines set explicitly")
    else:
        n = cores // cfg.omp_threads if cfg.omp_threads else cores
        n = max(n, 1)
        why.append(f"one {cfg.omp_threads or 1}-thread engine per core -> {n}")
        if items is not None:
            by_work = max(1, math.ceil(items / max(cfg.batch_size, 1)))
            if by_work < n:
                n = by_work
                why.append(f"{items} items fill only {by_work} batch(es) of {cfg.batch_size}")
        if engine_bytes and available_bytes is not None:
            by_memory = max(1, available_bytes // engine_bytes)
            if by_memory < n:
                n = int(by_memory)
                why.append(f"memory for {by_memory} ({available_bytes / GIB:.1f} GiB free, "
                           f"{engine_bytes / GIB:.1f} GiB per engine)")
    threads = cfg.omp_threads or max(1, cores // n)
    if not cfg.omp_threads:
        why.append(f"{threads} thread(s) each")
    return EngineLayout(n, threads, "; ".join(why))
