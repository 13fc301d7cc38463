"""The semantics stage: views/ for every item and view, then features/, then a report.

Streaming and resumable: items are read one parquet shard at a time, cut into
batches of ``llm.batch_size`` and sent to an actor pool of engines; finished
rows are written to ``views/`` in whole shards as they arrive. The key
(item_id, view, model, prompt_sha) is what a rerun checks, so a rerun after a
kill (of the driver or of an engine actor) generates exactly the missing keys,
and a changed prompt regenerates only its view. The caller opens Ray.

Why an actor pool of plain ``vllm.LLM`` rather than a ``ray.data.llm``
processor: on CPU the processor ran at ~0.5 of raw ``LLM.chat`` throughput
and paid ~40-55 s of start-up per call (DEVELOPERS.md, "Engines on CPU"); plain actors
start in ~10 s, run both views of a batch in one ``LLM.chat`` call, keep the
next batch queued, and let the driver write each shard the moment it is whole.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from semacdr_dist.data.schemas import ITEMS, VIEW_NAMES, VIEWS, validate_table
from semacdr_dist.hardware import cpu_info, machine_summary, resolve_dtype
from semacdr_dist.manifest import finish_stage, should_skip, verify_inputs
from semacdr_dist.rundir import RunDir, StageIncomplete
from semacdr_dist.semantics.cache import export_view_cache, import_view_cache
from semacdr_dist.semantics.config import LLMBackend, LLMConfig, SemanticsStageConfig
from semacdr_dist.semantics.features import build_features
from semacdr_dist.semantics.layout import (
    ENGINE_OVERHEAD_BYTES,
    GIB,
    EngineLayout,
    engine_layout,
    weights_bytes,
)
from semacdr_dist.semantics.models import resolve_model
from semacdr_dist.semantics.prompts import prompt_sha
from semacdr_dist.semantics.report import faithfulness_summary
from semacdr_dist.semantics.views import drop_views, existing_keys, write_views
from semacdr_dist.semantics.workers import EnginePool, ViewWorker, generate_views

log = logging.getLogger(__name__)

_PROGRESS_EVERY_S = 10.0


def count_items(run: RunDir) -> int:
    """Number of items, from the parquet footers (nothing is loaded)."""
    return sum(
        pq.ParquetFile(run.path("items", f), filesystem=run.fs).metadata.num_rows for f in run.list_files("items")
    )


def _payloads(run: RunDir, batch_size: int, done: dict[str, np.ndarray]):
    """(items, requests) batches of the missing keys, one items shard at a time."""
    for fname, table in run.iter_tables("items"):
        table = validate_table(table, ITEMS, file=run.uri_of("items", fname))
        ids = table.column("item_id").to_numpy()
        missing = {v: ~np.isin(ids, done[v]) for v in VIEW_NAMES}
        todo = np.flatnonzero(np.logical_or.reduce([missing[v] for v in VIEW_NAMES]))
        for start in range(0, len(todo), batch_size):
            rows = todo[start : start + batch_size]
            items = table.take(pa.array(rows)).to_pylist()
            requests = [(j, v) for j, r in enumerate(rows) for v in VIEW_NAMES if missing[v][r]]
            yield items, requests


def _until(deadline: float | None, payloads, stopped: list[bool]):
    """``payloads`` until ``deadline`` (perf_counter); sets ``stopped[0]`` if it cut them short."""
    for p in payloads:
        if deadline is not None and time.perf_counter() > deadline:
            stopped[0] = True
            return
        yield p


def _split(payload):
    items, requests = payload
    if len(items) < 2:
        return None
    mid = len(items) // 2
    left = [(j, v) for j, v in requests if j < mid]
    right = [(j - mid, v) for j, v in requests if j >= mid]
    return (items[:mid], left), (items[mid:], right)


def _view_actors(cfg: SemanticsStageConfig, llm: LLMConfig, model_path: str, encoder_path: str, token: str):
    """One engine actor per ``llm.num_engines`` (``llm``: the config with its engine layout filled
    in). Ray restarts an actor that dies and re-runs the calls it held on the new one."""
    import ray

    actor_cls = ray.remote(ViewWorker)
    return [
        actor_cls.options(
            name=f"semacdr-llm-{token}-{slot}",
            num_cpus=llm.num_cpus_per_engine,
            num_gpus=llm.tensor_parallel_size if llm.use_gpu else 0,
            max_restarts=llm.max_actor_restarts,
            max_task_retries=llm.max_batch_retries,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(llm.omp_threads)}},
        ).remote(model_path, encoder_path, llm, cfg.encoder, cfg.seed * 1000 + slot, slot)
        for slot in range(llm.num_engines)
    ]


def plan_engines(llm: LLMConfig, model_path: str, items: int) -> EngineLayout:
    """The engine layout for this Ray cluster and ``items`` items to generate (semantics.layout)."""
    import os

    import psutil
    import ray

    res = ray.cluster_resources()
    single_node = sum(1 for n in ray.nodes() if n.get("Alive")) == 1
    engine_bytes = 0
    if llm.backend == LLMBackend.vllm and not llm.use_gpu:
        # Estimated with the driver's dtype choice; the actors resolve their own.
        dtype, _ = resolve_dtype(llm.dtype, llm.use_gpu)
        kv = (llm.kv_cache_gib or float(os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))) * GIB
        engine_bytes = weights_bytes(model_path, dtype) + int(kv) + ENGINE_OVERHEAD_BYTES
    return engine_layout(
        llm,
        ray_cpus=res.get("CPU", 1.0),
        host_cores=cpu_info().cores if single_node else None,
        ray_gpus=res.get("GPU", 0.0),
        items=items,
        engine_bytes=engine_bytes,
        available_bytes=psutil.virtual_memory().available if single_node else None,
    )


def _engine_figures(per_engine: dict[int, dict], actors: list[dict], batch_prompts: int) -> list[dict]:
    """Per engine: tok/s while busy, prompt vs generated tokens, batch fill, start-up."""
    out = []
    for info in actors:
        e = per_engine.get(info["engine"], {})
        busy = e.get("seconds", 0.0)
        calls = max(e.get("engine_calls", 0), 1)
        out.append({
            **info,
            "batches": e.get("batches", 0),
            "busy_seconds": busy,
            "generated_tokens": e.get("tokens", 0),
            "prompt_tokens": e.get("prompt_tokens", 0),
            "cached_prompt_tokens": e.get("cached_tokens", 0),
            "generated_tok_per_s": e.get("tokens", 0) / busy if busy else 0.0,
            "prompts_per_engine_call": e.get("prompts", 0) / calls,
            # Prompts per LLM call / prompts of a full batch (both views of batch_size items);
            # below 1: resample calls (only the rejected views) and a short last batch.
            "batch_fill": e.get("prompts", 0) / calls / max(batch_prompts, 1),
        })
    return out


def generate_missing(cfg: SemanticsStageConfig, run: RunDir, model_path: str, encoder_path: str, shas: dict[str, str]) -> dict:
    """Generate every missing (item, view) key; returns counters for the report."""
    from tqdm.auto import tqdm

    llm = cfg.llm
    done = existing_keys(run, llm.model, shas)
    n_items = count_items(run)
    todo = sum(n_items - len(done[v]) for v in VIEW_NAMES)
    stats: dict[str, Any] = {"requested_views": todo, "generated_views": 0, "fallbacks": 0, "tokens": 0}
    problems: Counter[str] = Counter()
    if todo == 0:
        log.info("views: all %d items x %d views present for %s; nothing to generate", n_items, 2, llm.model)
        return {**stats, "complete": True, "problems": {}, "seconds": 0.0, "engine_start_seconds": 0.0}
    missing_items = n_items - int(min(len(done[v]) for v in VIEW_NAMES))
    layout = plan_engines(llm, model_path, missing_items)
    llm = replace(llm, num_engines=layout.num_engines, omp_threads=layout.threads)
    log.info("views: %d engine(s) x %d thread(s): %s", layout.num_engines, layout.threads, layout.reason)
    token = uuid.uuid4().hex[:8]
    per_engine: dict[int, Counter] = {}
    pool = EnginePool(
        _view_actors(cfg, llm, model_path, encoder_path, token),
        call=lambda actor, p: actor.process.remote(p[0], p[1], shas),
        split=_split,
        max_in_flight=llm.max_batches_in_flight,
    )
    log.info("views: %d missing (item, view) keys; starting %d %s engine(s)", todo, llm.num_engines, llm.backend)
    pool.start()
    for info in pool.stats.actors:
        log.info("views: engine %d ready in %.1f s, dtype %s (%s), %d thread(s)", info["engine"],
                 info["start_seconds"], info["dtype"], info["dtype_reason"], info["threads"])
    t0 = time.perf_counter()
    buffer: list[dict] = []
    seq = 0
    last_log = t0
    bar = tqdm(total=todo, desc="views", unit="view", mininterval=2.0, disable=None)
    deadline = None if llm.max_generation_seconds is None else t0 + llm.max_generation_seconds
    stopped = [False]
    try:
        payloads = _until(deadline, _payloads(run, llm.batch_size, done), stopped)
        for (items, requests), result in pool.map_unordered(payloads):
            if result is None:  # these items kept killing engines: content fallbacks, never a hole
                log.error("items %s: engine failed repeatedly; writing fallback views", [i["item_id"] for i in items])
                result = generate_views(_NoEngine(), _NoEncoder(), items, requests, _no_retry(llm), shas)
                problems["engine_failure"] += len(requests)
            buffer.extend(result["rows"])
            if "engine" in result:
                per_engine.setdefault(result["engine"], Counter()).update(
                    {k: result[k] for k in ("tokens", "prompt_tokens", "cached_tokens", "prompts",
                                            "engine_calls", "seconds")} | {"batches": 1})
            problems.update(result["problems"])
            stats["tokens"] += result["tokens"]
            stats["generated_views"] += len(result["rows"])
            stats["fallbacks"] += sum(r["fallback"] for r in result["rows"])
            bar.update(len(result["rows"]))
            elapsed = time.perf_counter() - t0
            bar.set_postfix(items_s=f"{stats['generated_views'] / 2 / elapsed:.2f}", tok_s=f"{stats['tokens'] / elapsed:.0f}")
            if len(buffer) >= llm.shard_rows:
                write_views(run, f"part-{token}-{seq:05d}.parquet", buffer)
                buffer, seq = [], seq + 1
            if time.perf_counter() - last_log > _PROGRESS_EVERY_S:
                last_log = time.perf_counter()
                log.info(
                    "views: %d/%d  %.2f items/s  %.0f generated tok/s  %d fallbacks",
                    stats["generated_views"], todo, stats["generated_views"] / 2 / elapsed,
                    stats["tokens"] / elapsed, stats["fallbacks"],
                )  # fmt: skip
        if buffer:
            write_views(run, f"part-{token}-{seq:05d}.parquet", buffer)
    finally:
        bar.close()
        pool.close()
    seconds = time.perf_counter() - t0
    ps = pool.stats
    return {
        **stats,
        "complete": not stopped[0],
        "run_id": token,
        "finished_at": time.time(),
        "problems": dict(problems),
        "seconds": seconds,
        "engine_start_seconds": ps.start_seconds,
        "layout": layout.as_dict(),
        "dtype": sorted({a["dtype"] for a in ps.actors}),
        "dtype_reason": sorted({a["dtype_reason"] for a in ps.actors}),
        "prefix_caching": llm.prefix_caching,
        "prompt_tokens": sum(e.get("prompt_tokens", 0) for e in per_engine.values()),
        "cached_prompt_tokens": sum(e.get("cached_tokens", 0) for e in per_engine.values()),
        "engines": _engine_figures(per_engine, ps.actors, 2 * llm.batch_size),
        "items_per_s": stats["generated_views"] / 2 / max(seconds, 1e-9),
        "tokens_per_s": stats["tokens"] / max(seconds, 1e-9),
        "actor_restarts": ps.actor_restarts,
        "batch_retries": ps.batch_retries,
        "bisections": ps.bisections,
        "failed_batches": ps.failed_payloads,
    }


class _NoEngine:
    def generate(self, conversations):
        raise RuntimeError("no engine")


class _NoEncoder:
    dim = 1

    def encode(self, texts):
        return np.full((len(texts), 1), np.nan, np.float32)


def _no_retry(llm):
    return replace(llm, max_retries=0)


def run_semantics(cfg: SemanticsStageConfig, run: RunDir) -> dict:
    """views/ + features/ + semantics/report.json for every item of ``run``; returns the report."""
    if should_skip(cfg, run, "semantics"):  # raises if it was finished under another config
        log.info("semantics: done already (%s); skipping (force=true to redo)", run.uri_of("semantics"))
        return run.read_json("semantics/report.json")
    if not run.list_files("items"):
        raise FileNotFoundError(f"{run.uri_of('items')}: no items shards; run the prepare stage first")
    verify_inputs(run, "semantics")
    run.clear_done("semantics")
    t0 = time.perf_counter()
    llm = cfg.llm
    # Where a figure was measured: the report carries the driver's CPU (the engines
    # report their own in generation.engines).
    report_machine = machine_summary()
    model_path = resolve_model(llm.model, cfg.models_dir)
    encoder_path = resolve_model(cfg.encoder.model, cfg.models_dir)
    shas = {v: prompt_sha(llm, v) for v in VIEW_NAMES}
    report: dict[str, Any] = {"model": llm.model, "backend": llm.backend, "prompt_sha": shas,
                              "machine": report_machine}
    if llm.regenerate:
        report["dropped_views"] = drop_views(run, llm.model, shas)
    if llm.cache_path:
        report["imported_from_cache"] = import_view_cache(run, llm.cache_path, llm.model, shas)
    report["generation"] = gen = generate_missing(cfg, run, model_path, encoder_path, shas)
    if llm.cache_path:  # before features: finished views reach the cache even if the rest fails
        report["exported_to_cache"] = export_view_cache(run, llm.cache_path, llm.model, shas)
    if not gen["complete"]:
        have = existing_keys(run, llm.model, shas)
        report["views_present"] = {v: int(len(have[v])) for v in VIEW_NAMES}
        run.write_json("semantics/partial.json", report)  # not done: features wait for every view
        raise StageIncomplete(
            f"semantics: stopped at llm.max_generation_seconds={llm.max_generation_seconds:g} after "
            f"{gen['generated_views']} new views ({gen['items_per_s']:.2f} items/s); views present: "
            f"{report['views_present']} of {count_items(run)} items each. Everything generated is in "
            f"{run.uri_of('views')}; rerun the same command to continue."
        )
    report["features"] = build_features(cfg, run, encoder_path, shas)
    report.update(faithfulness_summary(run, llm.model, shas))
    report["seconds"] = time.perf_counter() - t0
    run.write_json("semantics/report.json", report)
    finish_stage(run, "semantics", cfg, {"views": report["views"], "seconds": report["seconds"]})
    g = report["generation"]
    log.info(
        "semantics: %d views generated (%d fallbacks, %d tokens) in %.1fs; features for %d items",
        g["generated_views"], g["fallbacks"], g["tokens"], report["seconds"], report["features"]["items"],
    )  # fmt: skip
    return report


__all__ = ["run_semantics", "generate_missing", "count_items", "VIEWS"]
