"""The evaluate stage: query vectors (Ray Data) → sharded FAISS top-K (Ray actors) → metrics → report.

:func:`evaluate_vectors` is the model-free core (item vectors + query vectors in,
flat metrics out) that tests and the train stage's validation call;
:func:`run_evaluate` wires it to a run directory and a model export.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from semacdr_dist.evaluate.config import EvalConfig
from semacdr_dist.evaluate.metrics import (
    example_groups,
    sampled_ranks,
    summarize,
    target_domain_history_counts,
    target_ranks,
)
from semacdr_dist.evaluate.sharded import ShardedIndex, _as_float32, pad_histories, recall_at_k
from semacdr_dist.manifest import finish_stage, should_skip, verify_inputs
from semacdr_dist.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass
class EvaluateStageConfig:
    """Everything the evaluate stage reads; the pipeline assembles it (`pipeline.evaluate_config`).
    The sequence length comes with each model's export, so no model config is needed."""

    evaluate: EvalConfig = field(default_factory=EvalConfig)
    # Redo a finished eval/<model> instead of reading it back.
    force: bool = False


def _check_examples(
    item_domain: np.ndarray, queries: np.ndarray, targets: np.ndarray, target_domain: np.ndarray, hist: np.ndarray, n_domains: int
) -> None:
    n_items = len(item_domain)
    n = len(targets)
    if len(queries) != n or len(target_domain) != n or len(hist) != n:
        raise ValueError(f"queries ({len(queries)}), targets ({n}), target_domain ({len(target_domain)}) and histories ({len(hist)}) differ in length")
    bad = np.flatnonzero((targets < 0) | (targets >= n_items))
    if len(bad):
        raise ValueError(f"example {bad[0]}: target {targets[bad[0]]} is not an item id in 0..{n_items - 1}")
    bad = np.flatnonzero((target_domain < 0) | (target_domain >= n_domains))
    if len(bad):
        raise ValueError(f"example {bad[0]}: target_domain {target_domain[bad[0]]} is not a domain index in 0..{n_domains - 1}")
    bad = np.flatnonzero(item_domain[targets] != target_domain)
    if len(bad):
        i = bad[0]
        raise ValueError(f"example {i}: target {targets[i]} is in domain {item_domain[targets[i]]}, but target_domain is {target_domain[i]}")
    bad = np.flatnonzero(((hist < -1) | (hist >= n_items)).any(1))
    if len(bad):
        raise ValueError(f"example {bad[0]}: history holds ids outside 0..{n_items - 1} (padding is -1)")
    if not np.isfinite(queries).all():
        raise ValueError(f"example {np.flatnonzero(~np.isfinite(queries).all(1))[0]}: query vector holds NaN or inf")


def evaluate_vectors(
    item_vectors: Any,
    item_domain: np.ndarray,
    queries: Any,
    targets: np.ndarray,
    target_domain: np.ndarray,
    histories: Any,
    cfg: EvalConfig,
    domains: list[str],
    *,
    split: str = "test",
    index: ShardedIndex | None = None,
) -> dict[str, float]:
    """Metrics of one split from vectors: keys ``<split>[/<domain>|/cold|/warm|/sampled...]/<metric>@K``.

    ``item_vectors`` [N, D] and ``queries`` [n, D] (numpy or torch); ``item_domain`` [N]
    domain indices; ``targets``/``target_domain`` [n]; ``histories`` [n, L] padded with -1
    or a list of id lists; ``cfg`` the evaluate settings.
    ``index``: a built :class:`ShardedIndex` to reuse (the train loop's validation);
    otherwise one is built and closed here. Needs an open Ray session.
    """
    ecfg = cfg
    items = _as_float32(item_vectors)
    item_domain = np.asarray(item_domain, dtype=np.int64)
    q = _as_float32(queries)
    targets = np.asarray(targets, dtype=np.int64)
    target_domain = np.asarray(target_domain, dtype=np.int64)
    hist = pad_histories(histories, len(targets))
    _check_examples(item_domain, q, targets, target_domain, hist, len(domains))
    kmax = max(ecfg.ks)
    own = index is None
    index = index or ShardedIndex.build(items, item_domain, ecfg, len(domains))
    try:
        t0 = time.perf_counter()
        _, top_ids = index.search(q, target_domain, kmax, hist)
        search_s = time.perf_counter() - t0
        ranks = target_ranks(top_ids, targets)
        cold = target_domain_history_counts(hist, item_domain, target_domain) <= ecfg.cold_start_threshold
        groups = example_groups(target_domain, cold, domains)
        out = summarize(ranks, groups, ecfg.ks, split, ecfg.bootstrap_samples, ecfg.seed)
        out[f"{split}/queries_per_s"] = float(len(q) / search_s) if search_s > 0 else float("nan")
        out[f"{split}/target_in_history"] = int((hist == targets[:, None]).any(1).sum())
        if ecfg.sampled_negatives > 0:
            s_ranks, short = sampled_ranks(
                q, items, targets, target_domain, item_domain, hist, ecfg.sampled_negatives, ecfg.seed, ecfg.exclude_history
            )
            out.update(summarize(s_ranks, groups, ecfg.ks, f"{split}/sampled", ecfg.bootstrap_samples, ecfg.seed))
            out[f"{split}/sampled/short_pools"] = int(short)
        if ecfg.index_type != "flat" and ecfg.recall_queries > 0:
            out.update(_recall_vs_exact(items, item_domain, q, target_domain, hist, top_ids, ecfg, len(domains), split))
    finally:
        if own:
            index.close()
    return out


def _recall_vs_exact(
    items: np.ndarray, item_domain: np.ndarray, q: np.ndarray, target_domain: np.ndarray, hist: np.ndarray,
    approx_ids: np.ndarray, ecfg: EvalConfig, n_domains: int, split: str,
) -> dict[str, float]:
    """recall@K of the approximate index against an exact flat index on a seeded query sample."""
    rng = np.random.default_rng([ecfg.seed, 0xEC])
    sel = np.sort(rng.choice(len(q), size=min(len(q), ecfg.recall_queries), replace=False))
    exact_cfg = replace(ecfg, index_type="flat")
    with ShardedIndex.build(items, item_domain, exact_cfg, n_domains) as exact:
        _, exact_ids = exact.search(q[sel], target_domain[sel], max(ecfg.ks), hist[sel])
    return {f"{split}/recall@{k}_vs_exact": recall_at_k(approx_ids[sel], exact_ids, k) for k in ecfg.ks}


class _UserEncoder:
    """Ray Data actor UDF: holds the exported user encoder, maps sequence rows to query vectors."""

    def __init__(self, export_dir: str, domains: list[str], max_len: int, device: str = "cpu"):
        import torch

        from semacdr_dist.model.export import load_export
        from semacdr_dist.rundir import local_dir

        torch.set_num_threads(1)
        self.model, _ = load_export(local_dir(export_dir), device=device)  # a URI on remote run dirs
        self.model.eval()
        self.domains, self.max_len, self.device = domains, max_len, device

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from semacdr_dist.data.batch import collate_numpy, to_torch

        tb = to_torch(collate_numpy(batch, self.max_len, self.domains), self.device)
        with torch.no_grad():
            vec = self.model.user_vectors(tb)
        return {"row": np.asarray(batch["row"], dtype=np.int64), "query": vec.detach().float().cpu().numpy()}


def query_vectors(table: pa.Table, export_dir: str, domains: list[str], max_len: int, ecfg: EvalConfig) -> np.ndarray:
    """User vectors [n, D] of a SEQUENCES table, in row order (Ray Data map with an actor pool)."""
    import ray

    n = table.num_rows
    cols = table.select(["user_id", "history", "history_domain", "target", "target_domain"])
    cols = cols.append_column("row", pa.array(np.arange(n, dtype=np.int64)))
    ds = ray.data.from_arrow(cols).map_batches(
        _UserEncoder,
        fn_constructor_kwargs={
            "export_dir": export_dir, "domains": domains, "max_len": max_len,
            "device": "cuda" if ecfg.encoder_num_gpus > 0 else "cpu",
        },
        batch_size=ecfg.encoder_batch_size,
        batch_format="numpy",
        concurrency=ecfg.encoder_actors,
        num_cpus=1,
        num_gpus=ecfg.encoder_num_gpus,
    )
    out: np.ndarray | None = None
    seen = np.zeros(n, dtype=bool)
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        rows, vec = batch["row"], np.asarray(batch["query"], dtype=np.float32)
        if out is None:
            out = np.empty((n, vec.shape[1]), dtype=np.float32)
        out[rows] = vec
        seen[rows] = True
    if out is None or not seen.all():
        raise RuntimeError(f"user encoder returned {int(seen.sum())} of {n} query vectors")
    return out


def _sequences(run: RunDir, split: str) -> pa.Table:
    from semacdr_dist.data.schemas import SEQUENCES, validate_table

    table = run.read_table("sequences", split)
    return validate_table(table, SEQUENCES, run.uri_of("sequences", split))


def _domain_indices(table: pa.Table, domains: list[str], where: str) -> np.ndarray:
    from semacdr_dist.data.schemas import DataValidationError

    index_of = {d: i for i, d in enumerate(domains)}
    names = table["target_domain"].to_pylist()
    for row, d in enumerate(names):
        if d not in index_of:
            raise DataValidationError(where, row, f"target_domain {d!r} is not a catalog domain", f"stats.json has {domains}")
    return np.array([index_of[d] for d in names], dtype=np.int64)


def run_evaluate(cfg: EvaluateStageConfig, run: RunDir, model_name: str) -> dict:
    """Evaluate `export/<model_name>/` on `sequences/{splits}`; writes `eval/<model_name>/`.

    Returns the result dict written as ``metrics.json`` (see :mod:`.report`). A finished
    evaluation is read back unless ``cfg.force``. Needs an open Ray session.
    """
    from semacdr_dist.data.catalog import load_catalog
    from semacdr_dist.evaluate.report import write_eval_report
    from semacdr_dist.model.export import load_export  # lazy: the model package builds it

    stage = f"eval/{model_name}"
    if should_skip(cfg, run, stage):  # raises if it was finished under another config
        log.info("%s already done: reading %s", stage, run.uri_of(stage, "metrics.json"))
        return run.read_json(f"{stage}/metrics.json")
    verify_inputs(run, stage)  # a missing or truncated shard stops here, named
    ecfg = cfg.evaluate
    if not run.exists("export", model_name):
        raise FileNotFoundError(f"{run.uri_of('export', model_name)} missing: train and export {model_name} first")
    from semacdr_dist.rundir import local_dir

    export_dir = run.uri_of("export", model_name)  # actors open it themselves (s3:// works too)
    catalog = load_catalog(run)
    model, item_vectors = load_export(local_dir(export_dir))
    max_len = model.cfg.max_len  # the length the model was trained with
    del model  # the encoder actors load their own copy
    items = _as_float32(item_vectors)
    if items.shape[0] != catalog.n_items:
        raise ValueError(f"{export_dir}: {items.shape[0]} item vectors, the catalog has {catalog.n_items} items")
    t0 = time.perf_counter()
    # Query vectors of every split first: the encoder actors are gone before the shard
    # actors take their CPUs/GPUs, so neither waits on the other for resources.
    inputs = {}
    for split in ecfg.splits:
        table = _sequences(run, split)
        target_domain = _domain_indices(table, catalog.domains, run.uri_of("sequences", split))
        q = query_vectors(table, export_dir, catalog.domains, int(max_len), ecfg)
        inputs[split] = (q, table["target"].to_numpy(), target_domain, table["history"].to_pylist())
        log.info("%s: %d query vectors of %s", split, len(q), model_name)
    metrics: dict[str, float] = {}
    with ShardedIndex.build(items, catalog.item_domain, ecfg, len(catalog.domains)) as index:
        for split, (q, targets, target_domain, histories) in inputs.items():
            metrics.update(
                evaluate_vectors(
                    items, catalog.item_domain, q, targets, target_domain, histories, ecfg,
                    catalog.domains, split=split, index=index,
                )
            )
        shards = index.info()
    result = {
        "model": model_name,
        "settings": asdict(ecfg),
        "splits": list(ecfg.splits),
        "domains": list(catalog.domains),
        "n_items": int(catalog.n_items),
        "dim": int(items.shape[1]),
        "metrics": metrics,
        "shards": shards,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_eval_report(run, model_name, result)
    finish_stage(run, stage, cfg, {"model": model_name, "seconds": result["seconds"]})
    return result


def vectors_result(model_name: str, metrics: dict[str, float], ecfg: EvalConfig, domains: list[str], splits: list[str]) -> dict:
    """A report-ready result dict around :func:`evaluate_vectors` output (no export needed)."""
    return {"model": model_name, "settings": asdict(ecfg), "splits": list(splits), "domains": list(domains), "metrics": metrics}
