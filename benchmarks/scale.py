"""Scale benchmark: synthetic catalogs of 100k, 1M and 10M items through `prepare` and sharded
`evaluate`, each beside a plain single-process baseline doing the same work in the same run.

Per size (items; ~10 interactions per item over 3 domains, ~0.1% repeated rows):

* ``generate``: items.parquet + interactions.parquet (source=tabular), written chunk by
  chunk (never the whole catalog in memory), plus clustered 64-d item vectors
  (``items.npy``, dense item order) and 10k query vectors;
* ``prepare``: ``run_prepare`` on a local Ray session (driver + Ray workers);
* ``prepare_baseline``: one process, pyarrow/numpy: read, validate, dedupe items and
  interactions, dense ids, sort by user and time, leave-two-out split, write; above 10M
  interactions it first streams them into user-hash buckets on disk and prepares one bucket
  at a time (same outputs: checked at 100k with 4 buckets), so it fits at 10M items too;
* ``evaluate``: ``ShardedIndex`` with 1, 2, 4 shard actors reading their slice of
  ``items.npy`` (exact IndexFlatIP) and an IVF index, top-50 of every query; recall@K of
  IVF against the exact result;
* ``evaluate_baseline``: one ``faiss.IndexFlatIP`` over all vectors, one search; its
  top-50 ids are compared with the sharded ones;
* ``train_data`` (sizes in ``--train-sizes``): the prepared train split streamed through
  Ray Data (``train.trainer.train_dataset``) into 2 Ray Train workers with the project's
  collate, per-worker peak RSS recorded.

Each phase runs in its own process; a sampler thread in this process records the phase's
wall time, the peak RSS of its main process (the driver) and the peak of its whole process
tree (Ray's raylet, object store and workers are its descendants), as summed RSS and as
summed PSS (shared object-store pages counted once). A phase whose tree PSS passes
``--cap-gib`` is stopped and recorded as such.

Results: benchmarks/results/scale.{json,md,svg}. A size already in scale.json is skipped
(``--force`` redoes it), so sizes can be run one at a time and the 10M one in the background:

    nice -n 10 .venv/bin/python benchmarks/scale.py --sizes 100k 1m
    nohup nice -n 10 .venv/bin/python benchmarks/scale.py --sizes 10m > /tmp/scale-10m.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
RESULTS = HERE / "results"
SIZES = {"100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
DOMAINS = ("food", "kitchen", "books")
DOMAIN_SHARE = (0.45, 0.35, 0.20)
MEAN_EVENTS = 10  # interactions per user (>= 3, so every user has valid and test targets)
DUP_SHARE = 0.001  # repeated (user, item, timestamp) rows: the dedupe must find them
N_CLUSTERS = 256  # item vectors cluster like real embeddings (IVF needs structure to be useful)
GEN_CHUNK = 1_000_000
PART = "part"  # label of a run that measures some phases of a size beside the main run
FLAT_BUDGET = 10**10  # items x queries of one exact search (1M items x 10k queries)
PHASES = ("generate", "prepare", "prepare_baseline", "evaluate", "evaluate_baseline", "train_data")


# ----------------------------------------------------------------------------- generation
def _domain_of(idx: np.ndarray, n_items: int) -> np.ndarray:
    edges = np.cumsum(np.array(DOMAIN_SHARE) * n_items).astype(np.int64)
    return np.searchsorted(edges, idx, side="right").clip(0, len(DOMAINS) - 1).astype(np.int8)


def _raw_id(idx: np.ndarray) -> np.ndarray:
    """A bijective scramble of 0..2^40: reader ids are neither dense nor in file order."""
    return ((idx.astype(np.uint64) * np.uint64(0x9E3779B1) + np.uint64(12345)) & np.uint64((1 << 40) - 1)).astype(np.int64)


def generate(root: Path, n_items: int, dim: int, n_queries: int, seed: int = 0) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from semacdr_dist.data.schemas import INTERACTIONS, ITEMS

    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    names = pa.array(DOMAINS, pa.string())
    with pq.ParquetWriter(raw / "items.parquet", ITEMS) as w:
        for a in range(0, n_items, GEN_CHUNK):
            idx = np.arange(a, min(n_items, a + GEN_CHUNK), dtype=np.int64)
            dom = pa.DictionaryArray.from_arrays(pa.array(_domain_of(idx, n_items).astype(np.int32)), names).cast(pa.string())
            sid = pc.cast(pa.array(idx), pa.string())
            w.write_table(pa.table({
                "item_id": pa.array(_raw_id(idx)),
                "domain": dom,
                "raw_id": pc.binary_join_element_wise("I", sid, ""),
                "title": pc.binary_join_element_wise("Synthetic item ", sid, " for the ", dom, " aisle", ""),
                "categories": pa.ListArray.from_arrays(pa.array(np.arange(len(idx) + 1, dtype=np.int32)), dom),
                "brand": pc.binary_join_element_wise("Brand ", pc.cast(pa.array(idx % 997), pa.string()), ""),
                "description": pa.nulls(len(idx), pa.string()),
            }, schema=ITEMS))
    n_rows = n_dups = 0
    n_users = n_items  # ~MEAN_EVENTS interactions per item
    with pq.ParquetWriter(raw / "interactions.parquet", INTERACTIONS) as w:
        for c, a in enumerate(range(0, n_users, GEN_CHUNK // MEAN_EVENTS)):
            rng = np.random.default_rng([seed, 1, c])
            users = np.arange(a, min(n_users, a + GEN_CHUNK // MEAN_EVENTS), dtype=np.int64)
            lengths = 3 + rng.geometric(1 / (MEAN_EVENTS - 2), len(users)).clip(0, 500) - 1
            user = np.repeat(users * 7 + 1, lengths)  # user ids: sparse, not dense
            item = (n_items * rng.random(len(user)) ** 1.5).astype(np.int64)  # popularity skew
            start = np.repeat(rng.integers(1_500_000_000, 1_600_000_000, len(users)), lengths)
            ts = start + rng.integers(60, 86_400, len(user)).cumsum()  # increasing within each user
            dup = rng.random(len(user)) < DUP_SHARE
            user, item, ts = (np.concatenate([x, x[dup]]) for x in (user, item, ts))
            order = rng.permutation(len(user))  # files are not grouped by user
            user, item, ts = user[order], item[order], ts[order]
            dom = pa.DictionaryArray.from_arrays(pa.array(_domain_of(item, n_items).astype(np.int32)), names).cast(pa.string())
            w.write_table(pa.table({"user_id": user, "item_id": _raw_id(item), "domain": dom, "timestamp": ts}, schema=INTERACTIONS))
            n_rows += len(user)
            n_dups += int(dup.sum())
    # Vectors in dense item order (prepare numbers items by (domain, reader id)): the
    # evaluate phases need no prepare output, only the per-domain counts.
    vec = root / "vectors"
    vec.mkdir(exist_ok=True)
    centers = np.random.default_rng([seed, 2]).standard_normal((N_CLUSTERS, dim)).astype(np.float32)
    items = np.lib.format.open_memmap(vec / "items.npy", mode="w+", dtype=np.float32, shape=(n_items, dim))
    for c, a in enumerate(range(0, n_items, GEN_CHUNK)):
        rng = np.random.default_rng([seed, 3, c])
        b = min(n_items, a + GEN_CHUNK)
        x = centers[rng.integers(0, N_CLUSTERS, b - a)] + 0.6 * rng.standard_normal((b - a, dim), dtype=np.float32)
        items[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
    items.flush()
    del items
    counts = np.bincount(_domain_of(np.arange(n_items), n_items), minlength=len(DOMAINS))
    np.save(vec / "item_domain.npy", np.repeat(np.arange(len(DOMAINS), dtype=np.int8), counts))
    rng = np.random.default_rng([seed, 4])
    q = centers[rng.integers(0, N_CLUSTERS, n_queries)] + 0.6 * rng.standard_normal((n_queries, dim), dtype=np.float32)
    np.save(vec / "queries.npy", (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32))
    return {"interactions": n_rows, "repeated_rows": n_dups, "users": n_users, "items": n_items, "dim": dim, "queries": n_queries,
            "raw_bytes": sum(f.stat().st_size for f in raw.iterdir()), "vector_bytes": (vec / "items.npy").stat().st_size}


# ----------------------------------------------------------------------------- phases
def _ray(root: Path, object_store_gib: float):
    from semacdr_dist.runtime import RayConfig, ray_session

    tmp = Path("/tmp") / f"ray-scale-{os.getpid()}"
    return ray_session(RayConfig(num_cpus=4, object_store_memory_mb=int(object_store_gib * 1024), temp_dir=str(tmp)))


def _prepare_cfg(root: Path, out: Path):
    from semacdr_dist.config import load_config

    return load_config([
        "data.source=tabular", f"data.path={root / 'raw'}", "data.on_bad_rows=reject", "data.chunk_rows=1000000",
        f"run_dir={out}", "force=true",
    ])


def _digest(out: Path) -> dict:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    res = {}
    for split in ("train", "valid", "test"):
        d = ds.dataset(out / "sequences" / split, format="parquet")
        n = s_user = s_target = s_len = 0
        for b in d.to_batches(columns=["user_id", "target", "history"]):
            n += b.num_rows
            s_user += int(pc.sum(b["user_id"]).as_py() or 0)
            s_target += int(pc.sum(b["target"]).as_py() or 0)
            s_len += int(pc.sum(pc.list_value_length(b["history"])).as_py() or 0)
        res[split] = [n, s_user, s_target, s_len]
    return res


def phase_prepare(root: Path, args) -> dict:
    from semacdr_dist.data.prepare import run_prepare
    from semacdr_dist.pipeline import prepare_config
    from semacdr_dist.rundir import RunDir

    out = root / "run"
    t0 = time.perf_counter()
    with _ray(root, args.object_store_gib):
        t1 = time.perf_counter()
        stats = run_prepare(prepare_config(_prepare_cfg(root, out)), RunDir(str(out)))
        t2 = time.perf_counter()
    return {"seconds_prepare": round(t2 - t1, 2), "seconds_ray_start": round(t1 - t0, 2), "stats_seconds": stats["seconds"],
            "n_items": stats["n_items"], "n_users": stats["n_users"], "n_interactions": stats["n_interactions"],
            "examples": stats["examples"], "rejected": stats["rejected"]["total"], "digest": _digest(out),
            "item_parts": len(list((out / "items").glob("part-*.parquet")))}


# Interactions per user-hash bucket of the single-process baseline: above this, it partitions
# the interactions into buckets on disk first (one streaming pass) and prepares them one at a
# time, the plain way to do it in one process when the data does not fit; below, one bucket.
BASELINE_BUCKET_ROWS = 10_000_000


def phase_prepare_baseline(root: Path, args) -> dict:
    """Everything in this one process: read, validate, dedupe, dense ids, sort by user and time,
    leave-two-out split, write. Held in memory whole up to `BASELINE_BUCKET_ROWS` interactions;
    beyond, the interactions go through user-hash buckets on disk (the items stay in memory)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from semacdr_dist.data.schemas import INTERACTIONS, ITEMS, SEQUENCES
    from semacdr_dist.data.sequences import (
        DOM_COL,
        ROW_COL,
        SRC_COL,
        build_examples,
        split_duplicates,
    )

    out = root / "baseline"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    items = pq.read_table(root / "raw" / "items.parquet")
    title_ok = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(items["title"])), 0), False)
    items = items.filter(pc.and_(title_ok, pc.is_valid(items["item_id"])))
    raw = items["item_id"].to_numpy()
    _, first = np.unique(raw, return_index=True)
    items = items.take(pa.array(np.sort(first)))
    domains = list(dict.fromkeys(items["domain"].unique().to_pylist()))
    dom = pc.index_in(items["domain"], value_set=pa.array(domains)).to_numpy().astype(np.int64)
    raw = items["item_id"].to_numpy()
    order = np.lexsort((raw, dom))
    items = items.take(pa.array(order)).set_column(0, "item_id", pa.array(np.arange(len(order)), pa.int64()))
    sorted_raw, dense_of = raw[order], np.arange(len(order))
    by_raw = np.argsort(sorted_raw)
    sorted_raw, dense_of, dom_of_dense = sorted_raw[by_raw], dense_of[by_raw], dom[order].astype(np.int8)
    out.mkdir(parents=True)
    pq.write_table(items.cast(ITEMS), out / "items.parquet")
    n_items = items.num_rows
    del items

    def mapped(inter: pa.Table, first_row: int) -> pa.Table:
        """Valid rows with dense item ids (the validation and id map of the whole file)."""
        rows = np.arange(first_row, first_row + inter.num_rows)
        keep = pc.fill_null(pc.greater_equal(inter["timestamp"], 0), False).to_numpy(zero_copy_only=False)
        pos = np.searchsorted(sorted_raw, inter["item_id"].to_numpy()).clip(0, len(sorted_raw) - 1)
        keep &= sorted_raw[pos] == inter["item_id"].to_numpy()
        dense = dense_of[pos]
        return pa.table({
            "user_id": inter["user_id"], "item_id": dense, "domain": inter["domain"], DOM_COL: dom_of_dense[dense],
            "timestamp": inter["timestamp"], SRC_COL: np.zeros(inter.num_rows, np.int32), ROW_COL: rows,
        }).filter(pa.array(keep))

    source = pq.ParquetFile(root / "raw" / "interactions.parquet")
    n_buckets = max(1, math.ceil(source.metadata.num_rows / BASELINE_BUCKET_ROWS))
    if n_buckets == 1:
        buckets = [lambda: mapped(source.read(), 0)]
    else:  # pass 1: stream the file once into user-hash buckets on disk
        spill = out / "_buckets"
        spill.mkdir()
        writers: dict[int, pq.ParquetWriter] = {}
        first_row = 0
        for batch in source.iter_batches(batch_size=1_000_000):
            part = mapped(pa.Table.from_batches([batch]), first_row)
            first_row += batch.num_rows
            bucket = part["user_id"].to_numpy() % n_buckets
            for b in range(n_buckets):
                piece = part.filter(pa.array(bucket == b))
                if b not in writers:
                    writers[b] = pq.ParquetWriter(spill / f"{b:05d}.parquet", piece.schema)
                writers[b].write_table(piece)
        for w in writers.values():
            w.close()
        buckets = [lambda b=b: pq.read_table(spill / f"{b:05d}.parquet") for b in sorted(writers)]
    n_clean = n_dup = 0
    for split in ("train", "valid", "test"):
        (out / "sequences" / split).mkdir(parents=True)
    (out / "interactions").mkdir()
    for b, read in enumerate(buckets):  # pass 2: each bucket whole (every interaction of its users)
        clean, dup = split_duplicates(read())  # sorts by user and time
        n_clean, n_dup = n_clean + clean.num_rows, n_dup + dup.num_rows
        ex = build_examples(clean, domains, max_history=50)
        pq.write_table(clean.select(INTERACTIONS.names).cast(INTERACTIONS), out / "interactions" / f"part-{b:05d}.parquet")
        del clean
        for split in ("train", "valid", "test"):
            pq.write_table(ex.filter(pc.equal(ex["split"], split)).select(SEQUENCES.names).cast(SEQUENCES),
                           out / "sequences" / split / f"part-{b:05d}.parquet")
        del ex
    shutil.rmtree(out / "_buckets", ignore_errors=True)
    return {"seconds_prepare": round(time.perf_counter() - t0, 2), "n_items": n_items, "n_interactions": n_clean,
            "repeated_rows": n_dup, "buckets": n_buckets, "digest": _digest(out)}


def _queries(root: Path) -> tuple[np.ndarray, np.ndarray]:
    return np.load(root / "vectors" / "queries.npy"), np.load(root / "vectors" / "item_domain.npy")


def phase_evaluate(root: Path, args) -> dict:
    from semacdr_dist.evaluate.config import EvalConfig
    from semacdr_dist.evaluate.sharded import ShardedIndex, VectorFile, recall_at_k

    q, item_domain = _queries(root)
    vf = VectorFile(str(root / "vectors" / "items.npy"))
    # Exact search costs items x queries: past FLAT_BUDGET the flat runs use the first queries
    # only (queries/s is what they report; IVF still answers every query).
    n_flat = args.flat_queries if args.flat_queries > 0 else min(len(q), max(1000, FLAT_BUDGET // len(item_domain)))
    runs, exact_ids = [], None
    with _ray(root, 1.0):
        plan = [("flat", s) for s in args.shards] + ([("ivf", max(args.shards))] if args.ivf_nlist > 0 else [])
        for index_type, shards in plan:
            cfg = EvalConfig(num_shards=shards, shard_num_cpus=max(0.5, 2 / shards), index_type=index_type,
                             ivf_nlist=args.ivf_nlist, ivf_nprobe=args.ivf_nprobe, candidates="all",
                             exclude_history=False, query_batch_size=2048, max_inflight_batches=2)
            t0 = time.perf_counter()
            qs = q[:n_flat] if index_type == "flat" else q
            with ShardedIndex.build(vf, item_domain, cfg, len(DOMAINS)) as index:
                t1 = time.perf_counter()
                _, ids = index.search(qs, None, args.k)
                t2 = time.perf_counter()
                info = index.info()
            rec = {"index": index_type, "shards": shards, "threads_per_shard": max(1, int(cfg.shard_num_cpus)),
                   "queries": len(qs), "build_s": round(t1 - t0, 2), "search_s": round(t2 - t1, 2),
                   "queries_per_s": round(len(qs) / (t2 - t1), 1),
                   "shard_rss_gib": [round(i["rss_bytes"] / 2**30, 3) for i in info],
                   "shard_vector_gib": [round(i["vector_bytes"] / 2**30, 3) for i in info]}
            if index_type == "flat" and exact_ids is None:
                exact_ids = ids
                np.save(root / "vectors" / "sharded_top.npy", ids)
            elif index_type == "flat":
                rec["same_topk_as_first"] = float((ids == exact_ids).all(1).mean())
            else:
                rec.update({f"recall@{k}": round(recall_at_k(ids[:n_flat], exact_ids, k), 4) for k in (1, 10, args.k)},
                           ivf_nlist=args.ivf_nlist, ivf_nprobe=args.ivf_nprobe)
            runs.append(rec)
            print(json.dumps(rec), flush=True)
    return {"runs": runs, "k": args.k, "queries": len(q)}


def phase_evaluate_baseline(root: Path, args) -> dict:
    import faiss

    faiss.omp_set_num_threads(2)
    q, _ = _queries(root)
    q = q[: args.baseline_queries or len(q)]  # its cost is linear in queries: queries/s compare as is
    src = np.load(root / "vectors" / "items.npy", mmap_mode="r")
    t0 = time.perf_counter()
    index = faiss.IndexFlatIP(src.shape[1])
    for a in range(0, len(src), GEN_CHUNK):
        index.add(np.ascontiguousarray(src[a:a + GEN_CHUNK]))
    t1 = time.perf_counter()
    _, ids = index.search(q, args.k)
    t2 = time.perf_counter()
    out = {"build_s": round(t1 - t0, 2), "search_s": round(t2 - t1, 2), "queries_per_s": round(len(q) / (t2 - t1), 1), "threads": 2,
           "queries": len(q)}
    sharded = root / "vectors" / "sharded_top.npy"
    if sharded.exists():
        other = np.load(sharded)[: len(q)]
        out["sharded_rows_identical"] = float((other == ids).all(1).mean())
        out["sharded_ids_overlap"] = float(np.mean([len(np.intersect1d(a, b)) / args.k for a, b in zip(ids, other, strict=True)]))
    return out


def _train_worker(config: dict) -> None:
    import psutil
    import ray.train

    from semacdr_dist.data.batch import SequenceCollate
    from semacdr_dist.profiling import own_memory_bytes

    proc = psutil.Process()
    peak = [proc.memory_info().rss, 0, 0]  # RSS, USS (private), shared object-store pages
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            m = proc.memory_full_info()
            peak[0], peak[1], peak[2] = max(peak[0], m.rss), max(peak[1], m.uss), max(peak[2], own_memory_bytes()["shmem"])
            stop.wait(0.5)

    threading.Thread(target=sample, daemon=True).start()
    rank = ray.train.get_context().get_world_rank()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    rows = 0
    shard = ray.train.get_dataset_shard("train")
    for batch in shard.iter_torch_batches(batch_size=1024, collate_fn=SequenceCollate(50, config["domains"])):
        rows += len(batch["target"])
    stop.set()
    Path(config["out"], f"worker-{rank}.json").write_text(json.dumps({
        "rank": rank, "rows": rows, "seconds": round(time.perf_counter() - t0, 2), "rss_start_gib": round(rss0 / 2**30, 3),
        "peak_rss_gib": round(peak[0] / 2**30, 3), "peak_uss_gib": round(peak[1] / 2**30, 3),
        "peak_object_store_pages_gib": round(peak[2] / 2**30, 3), "pid": os.getpid()}))


def phase_train_data(root: Path, args) -> dict:
    import pyarrow.parquet as pq
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from semacdr_dist.rundir import RunDir
    from semacdr_dist.train.trainer import train_dataset

    run = RunDir(str(root / "run"))
    files = sorted((root / "run" / "sequences" / "train").glob("*.parquet"))
    full = sum(pq.ParquetFile(f).metadata.row_group(i).total_byte_size for f in files for i in range(pq.ParquetFile(f).num_row_groups))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    out = root / "train_data"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    with _ray(root, 1.0):
        t0 = time.perf_counter()
        trainer = TorchTrainer(
            _train_worker, train_loop_config={"domains": list(DOMAINS), "out": str(out)},
            scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
            torch_config=TorchConfig(backend="gloo"), datasets={"train": train_dataset(run)},
            run_config=RunConfig(name="scale-train-data", storage_path=str(root / "ray_results")),
        )
        trainer.fit()
        wall = time.perf_counter() - t0
    workers = [json.loads(p.read_text()) for p in sorted(out.glob("worker-*.json"))]
    return {"train_rows": rows, "train_split_uncompressed_gib": round(full / 2**30, 3), "seconds": round(wall, 2),
            "workers": workers, "rows_streamed": sum(w["rows"] for w in workers)}


# ----------------------------------------------------------------------------- measuring
class Monitor:
    """Peak RSS of a process and of its tree (summed RSS and PSS), sampled in a thread; a cap on the tree."""

    def __init__(self, pid: int, cap_bytes: float, interval_s: float = 0.5):
        self.pid, self.cap, self.interval = pid, cap_bytes, interval_s
        self.driver = self.tree_rss = self.tree_pss = 0
        self.min_available = float("inf")
        self.capped = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            rss = pss = 0
            for p in procs:
                try:
                    m = p.memory_full_info()
                except psutil.Error:
                    continue
                rss += m.rss
                pss += getattr(m, "pss", m.rss)
                if p.pid == self.pid:
                    self.driver = max(self.driver, m.rss)
            self.tree_rss, self.tree_pss = max(self.tree_rss, rss), max(self.tree_pss, pss)
            self.min_available = min(self.min_available, psutil.virtual_memory().available)
            if pss > self.cap and not self.capped:
                self.capped = True
                for p in procs:  # the phase and its descendants (Ray workers have their own groups)
                    try:
                        p.send_signal(signal.SIGKILL)
                    except psutil.Error:
                        pass
            self._stop.wait(self.interval)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def record(self) -> dict:
        g = 2**30
        return {"driver_peak_rss_gib": round(self.driver / g, 3), "tree_peak_rss_gib": round(self.tree_rss / g, 3),
                "tree_peak_pss_gib": round(self.tree_pss / g, 3), "min_available_gib": round(self.min_available / g, 2)}


def run_phase(name: str, root: Path, args, code: str | None, tries: int = 3) -> dict:
    """Run one phase in its own process; retried when it fails within 3 minutes (on a box
    loaded past ~30, a local Ray head can time out while starting)."""
    for attempt in range(1, tries + 1):
        rec = _run_phase_once(name, root, args, code)
        if rec["exit"] == 0 or rec["wall_s"] > 180 or rec.get("stopped") or attempt == tries:
            rec["attempts"] = attempt
            return rec
        time.sleep(10)
    raise AssertionError("unreachable")


def _run_phase_once(name: str, root: Path, args, code: str | None) -> dict:
    out = root / f"{name}.result.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([code or str(HERE.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, __file__, *sys.argv[1:], "--phase", name, "--root", str(root)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    with Monitor(proc.pid, args.cap_gib * 2**30) as mon:
        rc = proc.wait()
    wall = time.perf_counter() - t0
    rec = {"phase": name, "wall_s": round(wall, 2), "exit": rc, **mon.record(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}
    if mon.capped:
        rec["stopped"] = f"tree PSS passed the {args.cap_gib} GiB cap after {wall:.0f} s"
    if out.exists():
        rec.update(json.loads(out.read_text()))
    print(f"== {root.name} {name}: {json.dumps(rec)}", flush=True)
    return rec


def phase_main(args) -> None:
    root = Path(args.root)
    done = root / f"{args.phase}.result.{PART}.json"
    if not args.label and done.exists():  # measured by a concurrent `--label part` run: not twice
        (root / f"{args.phase}.result.json").write_text(json.dumps({**json.loads(done.read_text()), "measured_in": PART}))
        return
    n = SIZES[root.name] if root.name in SIZES else int(root.name)
    fn = {"generate": lambda r, a: generate(r, n, a.dim, a.queries), "prepare": phase_prepare,
          "prepare_baseline": phase_prepare_baseline, "evaluate": phase_evaluate,
          "evaluate_baseline": phase_evaluate_baseline, "train_data": phase_train_data}[args.phase]
    res = fn(root, args)
    (root / f"{args.phase}.result.json").write_text(json.dumps(res))
    if args.label == PART:
        (root / f"{args.phase}.result.{PART}.json").write_text(json.dumps(res))


# ----------------------------------------------------------------------------- report
def _load() -> dict:
    path = RESULTS / "scale.json"
    return json.loads(path.read_text()) if path.exists() else {"benchmark": "scale", "sizes": {}}


def _merged(data: dict) -> dict:
    """Sizes with the phases of their `<size>-part` run folded in (those measured the phase)."""
    sizes = {k: json.loads(json.dumps(v)) for k, v in data["sizes"].items() if not k.endswith(f"-{PART}")}
    for k, v in data["sizes"].items():
        if k.endswith(f"-{PART}"):
            base = sizes.setdefault(k[: -len(PART) - 1], {"items": v["items"], "phases": {}})
            for name, ph in v["phases"].items():
                if name != "generate":
                    base["phases"][name] = {**ph, "run": "concurrent"}
    for k, v in sizes.items():  # generated once by a `--label gen` run, reused by the others
        gen = data["sizes"].get(f"{k}-gen", {}).get("phases", {}).get("generate")
        if gen and "generate" not in v["phases"]:
            v["phases"]["generate"] = gen
            v["interactions"] = gen.get("interactions")
    return {**data, "sizes": sizes}


def _slope(xs: list[float], ys: list[float]) -> float | None:
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y and y > 0]
    if len(pts) < 2:
        return None
    (x0, y0), (x1, y1) = pts[0], pts[-1]
    return round((y1 - y0) / (x1 - x0), 2)


def _series(data: dict) -> dict[str, list[tuple[int, float]]]:
    """(items, value) series for the table and the plot, in size order."""
    s: dict[str, list[tuple[int, float]]] = {}
    for key, rec in sorted(data["sizes"].items(), key=lambda kv: kv[1].get("items", 0)):
        if "-" in key:
            continue
        n = rec["items"]
        ph = rec.get("phases", {})

        def add(name: str, value, n=n) -> None:
            if value is not None:
                s.setdefault(name, []).append((n, value))

        p, b = ph.get("prepare", {}), ph.get("prepare_baseline", {})
        add("prepare_s", p.get("seconds_prepare"))
        add("prepare_baseline_s", b.get("seconds_prepare") if not b.get("stopped") else None)
        add("prepare_driver_gib", p.get("driver_peak_rss_gib"))
        add("prepare_tree_pss_gib", p.get("tree_peak_pss_gib"))
        add("prepare_baseline_gib", b.get("driver_peak_rss_gib") if not b.get("stopped") else None)
        e, eb = ph.get("evaluate", {}), ph.get("evaluate_baseline", {})
        flat2 = next((r for r in e.get("runs", []) if r["index"] == "flat" and r["shards"] == 2), None)
        add("eval_search_s", flat2 and flat2["search_s"])
        add("eval_baseline_search_s", eb.get("search_s"))
        add("eval_driver_gib", e.get("driver_peak_rss_gib"))
        add("eval_tree_pss_gib", e.get("tree_peak_pss_gib"))
    return s


def write_svg(series: dict, path: Path) -> None:
    """Two log-log panels by hand (no plotting library in the venv): seconds and GiB against items."""
    panels = [("seconds", ["prepare_s", "prepare_baseline_s", "eval_search_s", "eval_baseline_search_s"]),
              ("peak memory, GiB", ["prepare_driver_gib", "prepare_tree_pss_gib", "prepare_baseline_gib", "eval_driver_gib", "eval_tree_pss_gib"])]
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    w, h, pad = 440, 320, 55
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h + 110}" font-family="sans-serif" font-size="11">',
             '<rect width="100%" height="100%" fill="white"/>']
    for pi, (ylabel, names) in enumerate(panels):
        ox = pi * w
        pts = [v for n in names for v in series.get(n, [])]
        if not pts:
            continue
        xs, ys = [math.log10(x) for x, _ in pts], [math.log10(max(y, 1e-3)) for _, y in pts]
        x0, x1 = math.floor(min(xs)), math.ceil(max(xs)) if max(xs) > min(xs) else math.floor(min(xs)) + 1
        y0, y1 = math.floor(min(ys)), math.ceil(max(ys)) if max(ys) > min(ys) else math.floor(min(ys)) + 1

        def px(x: float, ox=ox, x0=x0, x1=x1) -> float:
            return ox + pad + (math.log10(x) - x0) / (x1 - x0) * (w - 2 * pad)

        def py(y: float, y0=y0, y1=y1) -> float:
            return h - pad + 20 - (math.log10(max(y, 1e-3)) - y0) / (y1 - y0) * (h - 2 * pad)

        parts.append(f'<rect x="{ox + pad}" y="{pad - 20}" width="{w - 2 * pad}" height="{h - 2 * pad}" fill="none" stroke="#888"/>')
        for e in range(x0, x1 + 1):
            parts.append(f'<text x="{px(10 ** e):.0f}" y="{h - pad + 35}" text-anchor="middle">1e{e}</text>')
        for e in range(y0, y1 + 1):
            parts.append(f'<text x="{ox + pad - 5}" y="{py(10 ** e) + 4:.0f}" text-anchor="end">1e{e}</text>')
        parts.append(f'<text x="{ox + w / 2}" y="{h - pad + 50}" text-anchor="middle">items (log)</text>')
        parts.append(f'<text x="{ox + w / 2}" y="{pad - 28}" text-anchor="middle" font-weight="bold">{ylabel} (log)</text>')
        for ci, name in enumerate(names):
            s = series.get(name, [])
            if not s:
                continue
            c = colors[ci % len(colors)]
            parts.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(c, " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s)))
            parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{c}"/>' for x, y in s]
            parts.append(f'<text x="{ox + pad}" y="{h + 25 + 14 * ci}" fill="{c}">{name}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def write_report(data: dict) -> None:
    from run_all import stamp_machine  # benchmarks/ is on sys.path when run as a script

    RESULTS.mkdir(exist_ok=True)
    series = _series(_merged(data))
    data["growth_exponents"] = {k: _slope([x for x, _ in v], [y for _, y in v]) for k, v in series.items()}
    (RESULTS / "scale.json").write_text(json.dumps(data, indent=2))
    data = _merged(data)
    lines = ["# scale: synthetic catalogs through prepare and sharded evaluate, each beside a single-process baseline", "",
             f"~{MEAN_EVENTS} interactions per item, {len(DOMAINS)} domains, {DUP_SHARE:.1%} repeated rows; "
             "64-d clustered item vectors, 10k queries, exact top-50 over all items. "
             "Driver = the phase's main process; tree = it and every descendant (Ray's raylet, object store, workers), "
             "PSS counts shared object-store pages once. Wall includes process and Ray start.", "",
             "## prepare", "",
             "| size | interactions | path | wall s | stage s | rows/s | driver peak GiB | tree peak RSS GiB | tree peak PSS GiB | vs baseline | note |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    order = sorted(data["sizes"].items(), key=lambda kv: (kv[1].get("items", 0), kv[0]))
    for key, rec in order:
        ph = rec.get("phases", {})
        n_rows = rec.get("interactions") or ph.get("generate", {}).get("interactions", 0)
        base = ph.get("prepare_baseline", {})
        for name in ("prepare", "prepare_baseline"):
            p = ph.get(name)
            if not p:
                continue
            sec = p.get("seconds_prepare")
            ratio = (round(base["seconds_prepare"] / sec, 2) if sec and base.get("seconds_prepare") and name == "prepare" else "")
            note = p.get("stopped") or ("" if p.get("exit") == 0 else f"exit {p.get('exit')}")
            if name == "prepare" and base.get("digest") and p.get("digest"):
                note = (note + " outputs equal baseline" if base["digest"] == p["digest"] else note + " OUTPUTS DIFFER").strip()
            lines.append(f"| {key} | {n_rows:,} | {'ray' if name == 'prepare' else 'single process'} | {p['wall_s']} | {sec or ''} | "
                         f"{round(n_rows / sec):,} | {p['driver_peak_rss_gib']} | {p['tree_peak_rss_gib']} | {p['tree_peak_pss_gib']} | {ratio} | {note} |"
                         if sec else f"| {key} | {n_rows:,} | {name} | {p['wall_s']} | | | {p['driver_peak_rss_gib']} | {p['tree_peak_rss_gib']} | {p['tree_peak_pss_gib']} | | {note} |")
    lines += ["", "vs baseline = baseline seconds / Ray seconds (> 1: Ray faster). rows/s = input interactions / stage seconds.", "",
              "## evaluate (top-50 over all items, 10k queries)", "",
              "| size | index | shards | threads/shard | queries | build s | search s | queries/s | per-shard RSS GiB | per-shard vectors GiB | recall@10 / @50 vs exact | same top-K |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---|"]
    for key, rec in order:
        ph = rec.get("phases", {})
        for r in ph.get("evaluate", {}).get("runs", []):
            rc = f"{r.get('recall@10')} / {r.get('recall@50')}" if r["index"] != "flat" else "exact"
            lines.append(f"| {key} | {r['index']} | {r['shards']} | {r['threads_per_shard']} | {r.get('queries', 10_000):,} | {r['build_s']} | {r['search_s']} | "
                         f"{r['queries_per_s']:,} | {r['shard_rss_gib']} | {r['shard_vector_gib']} | {rc} | {r.get('same_topk_as_first', '')} |")
        b = ph.get("evaluate_baseline")
        if b and "search_s" in b:
            lines.append(f"| {key} | single IndexFlatIP | - | {b['threads']} | {b.get('queries', 10_000):,} | {b['build_s']} | {b['search_s']} | {b['queries_per_s']:,} | "
                         f"process {b['driver_peak_rss_gib']} | | exact | rows identical to sharded: {b.get('sharded_rows_identical')} |")
        e = ph.get("evaluate")
        if e:
            lines.append(f"| {key} | (whole evaluate phase) | | | | | | | driver peak {e['driver_peak_rss_gib']}, tree PSS {e['tree_peak_pss_gib']} | | | |")
    tr = [(k, r["phases"]["train_data"]) for k, r in order if "train_data" in r.get("phases", {})]
    if tr:
        lines += ["", "## train data: the train split streamed through Ray Data into 2 Ray Train workers", "",
                  "| size | train rows | split uncompressed GiB | rows streamed | wall s | driver peak GiB | per-worker peak RSS GiB (start; private USS, object-store pages) | tree PSS GiB |",
                  "|---|---:|---:|---:|---:|---:|---|---:|"]
        for key, t in tr:
            if "workers" not in t:
                lines.append(f"| {key} | | | | {t['wall_s']} | {t['driver_peak_rss_gib']} | exit {t.get('exit')} | {t['tree_peak_pss_gib']} |")
                continue
            ws = ", ".join(f"{w['peak_rss_gib']} ({w['rss_start_gib']}; private {w.get('peak_uss_gib', '?')}, "
                           f"object store {w.get('peak_object_store_pages_gib', '?')})" for w in t["workers"])
            lines.append(f"| {key} | {t['train_rows']:,} | {t['train_split_uncompressed_gib']} | {t['rows_streamed']:,} | {t['seconds']} | "
                         f"{t['driver_peak_rss_gib']} | {ws} | {t['tree_peak_pss_gib']} |")
    lines += ["", "## growth", "", "Exponent a in value ~ items^a between the smallest and the largest size measured "
              "(1 = linear):", ""]
    lines += [f"- {k}: {v}" for k, v in data["growth_exponents"].items() if v is not None]
    lines += ["", "![time and memory against size](scale.svg)", ""]
    (RESULTS / "scale.md").write_text("\n".join(lines) + "\n")
    write_svg(series, RESULTS / "scale.svg")
    stamp_machine(RESULTS / "scale.json", "benchmarks/scale.py " + " ".join(sys.argv[1:]), quick=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["100k", "1m"], help="100k 1m 10m (or a number of items)")
    ap.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    ap.add_argument("--train-sizes", nargs="*", default=["1m"], help="sizes whose train split is streamed into 2 workers")
    ap.add_argument("--root", default="/tmp/semacdr-scale")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--flat-queries", type=int, default=0, help="queries of the exact sharded searches (0 = all up to FLAT_BUDGET)")
    ap.add_argument("--baseline-queries", type=int, default=0, help="queries of the single-index search (0 = all)")
    ap.add_argument("--ivf-nlist", type=int, default=1024, help="0 = no IVF run")
    ap.add_argument("--ivf-nprobe", type=int, default=16)
    ap.add_argument("--object-store-gib", type=float, default=2.0)
    ap.add_argument("--cap-gib", type=float, default=16.0, help="stop a phase whose process tree PSS passes this")
    ap.add_argument("--label", default="", help="record under '<size>-<label>' (e.g. a measurement of other code)")
    ap.add_argument("--code", default=None, help="checkout whose semacdr_dist the phases import (default: this one)")
    ap.add_argument("--force", action="store_true", help="redo sizes already in scale.json")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--from-log", default=None, help="record the '== <size> <phase>: {...}' lines of a run's log (one cut short)")
    args = ap.parse_args()
    if args.phase:
        phase_main(args)
        return
    data = _load()
    if args.from_log:
        for line in Path(args.from_log).read_text().splitlines():
            if line.startswith("== ") and ": {" in line:
                head, body = line[3:].split(": ", 1)
                size, name = head.split()
                key = f"{size}-{args.label}" if args.label else size
                rec = data["sizes"].setdefault(key, {"items": SIZES.get(size.split("-")[0]) or int(size), "phases": {}})
                rec["phases"][name] = {**json.loads(body), "from_log": args.from_log}
                if name == "generate":
                    rec["interactions"] = rec["phases"][name].get("interactions")
        write_report(data)
        return
    for size in args.sizes:
        key = f"{size}-{args.label}" if args.label else size
        if key in data["sizes"] and not args.force:
            print(f"== {key}: in scale.json already, skipped (--force redoes it)", flush=True)
            continue
        root = Path(args.root) / size
        root.mkdir(parents=True, exist_ok=True)
        rec = {"items": SIZES.get(size) or int(size), "phases": {}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        gen_done = (root / "generate.result.json").exists()
        for name in args.phases:
            if name == "train_data" and size not in args.train_sizes:
                continue
            if name == "generate" and gen_done:
                rec["phases"]["generate"] = {"phase": "generate", "reused": True, **json.loads((root / "generate.result.json").read_text())}
                continue
            rec["phases"][name] = run_phase(name, root, args, args.code)
            if name == "generate" and rec["phases"][name]["exit"] != 0:
                break
        rec["interactions"] = rec["phases"].get("generate", {}).get("interactions")
        data = _load()  # another size may have landed meanwhile (a background run)
        data["sizes"][key] = rec
        write_report(data)
        if not args.keep_data:
            for sub in ("run", "baseline", "ray_results", "train_data"):
                shutil.rmtree(root / sub, ignore_errors=True)
    print(f"results: {RESULTS / 'scale.md'}")


if __name__ == "__main__":
    main()
