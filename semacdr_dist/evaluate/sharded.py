"""Sharded maximum-inner-product search: one FAISS index per Ray actor, exact merge.

The corpus (global item ids 0..N-1) is cut into ``num_shards`` contiguous slices;
each actor holds its slice in one sub-index per candidate group (one per domain
when candidates are the target domain's items, one for the whole slice
otherwise), with the global ids kept explicit by ``faiss.IndexIDMap``. A query
batch goes to every shard; each shard returns its own top-K (history items
removed, ties broken by item id) and the driver merges them into the corpus
top-K. The merge is exact: the global top-K is contained in the union of the
per-shard top-K lists.

Ordering everywhere is score descending, then item id ascending, so results are
deterministic even when items tie. A shard guarantees this at the top-K boundary
by re-fetching deeper whenever the last fetched score still ties the K-th one
(flat index only; approximate indices have no exact boundary to protect).

Memory: each actor holds its slice (~corpus / num_shards); given a :class:`VectorFile`
the actors read their slices themselves and the driver holds one byte per item.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from semacdr_dist.evaluate.config import EvalConfig, validate_eval_config

log = logging.getLogger(__name__)

ALL_ITEMS = -1  # candidate group of "the whole slice" (evaluate.candidates=all)
EMPTY_ID = -1  # id of an empty result slot (fewer candidates than K)
_ID_SORT_MAX = np.iinfo(np.int64).max  # empty slots sort after every real id


def shard_bounds(n_items: int, num_shards: int) -> list[tuple[int, int]]:
    """[start, stop) of each shard: contiguous, sizes differing by at most one."""
    if num_shards < 1:
        raise ValueError(f"num_shards={num_shards}: must be >= 1")
    edges = np.linspace(0, n_items, num_shards + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def pad_histories(histories: Any, n: int) -> np.ndarray:
    """Histories as int64 [n, L] padded with -1 (accepts a padded array or a list of id lists)."""
    if histories is None:
        return np.full((n, 0), EMPTY_ID, dtype=np.int64)
    if isinstance(histories, np.ndarray) and histories.ndim == 2 and histories.dtype != object:
        out = histories.astype(np.int64, copy=False)
    else:
        rows = [np.asarray(h, dtype=np.int64).ravel() for h in histories]
        width = max((len(r) for r in rows), default=0)
        out = np.full((len(rows), width), EMPTY_ID, dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, width - len(r) :] = r
    if out.shape[0] != n:
        raise ValueError(f"histories has {out.shape[0]} rows for {n} queries")
    return out


def sort_topk(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the first k by (score desc, id asc); empty slots (id -1) go last."""
    sort_ids = np.where(ids == EMPTY_ID, _ID_SORT_MAX, ids)
    safe = np.where(ids == EMPTY_ID, -np.inf, scores)
    order = np.lexsort((sort_ids, -safe), axis=-1)[:, :k]
    out_s = np.take_along_axis(safe, order, axis=1).astype(np.float32)
    out_i = np.take_along_axis(ids, order, axis=1)
    if out_s.shape[1] < k:  # fewer slots than k: pad
        pad = k - out_s.shape[1]
        out_s = np.pad(out_s, ((0, 0), (0, pad)), constant_values=-np.inf)
        out_i = np.pad(out_i, ((0, 0), (0, pad)), constant_values=EMPTY_ID)
    return out_s, out_i


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact merge of per-shard top-k lists (each [nq, k]) into the global top-k."""
    if not parts:
        raise ValueError("nothing to merge")
    nq = parts[0][0].shape[0]
    for s, i in parts:
        if s.shape != i.shape or s.shape[0] != nq:
            raise ValueError(f"shard results disagree in shape: {s.shape} vs {i.shape} (nq={nq})")
    return sort_topk(np.concatenate([p[0] for p in parts], 1), np.concatenate([p[1] for p in parts], 1), k)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k ids that the approximate top-k also returned."""
    hits, total = 0, 0
    for a, e in zip(approx_ids[:, :k], exact_ids[:, :k], strict=True):
        e = e[e != EMPTY_ID]
        hits += len(np.intersect1d(a[a != EMPTY_ID], e))
        total += len(e)
    return hits / total if total else 1.0


@dataclass(frozen=True)
class VectorFile:
    """Item vectors [N, D] float32 in a ``.npy`` file on storage every actor can read.

    Each shard actor memory-maps the file and copies only its own slice into FAISS,
    so neither the driver nor the object store ever holds the whole corpus.
    """

    path: str

    def shape(self) -> tuple[int, int]:
        arr = np.load(self.path, mmap_mode="r")  # reads the header only
        if arr.ndim != 2 or arr.dtype != np.float32:
            raise ValueError(f"{self.path}: item vectors must be a 2-d float32 .npy, got {arr.dtype} {arr.shape}")
        return int(arr.shape[0]), int(arr.shape[1])


_ADD_CHUNK = 1 << 18  # rows copied into FAISS at a time (64 MiB at 64-d): bounds the build's extra memory


def _training_sample(source: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Up to n evenly spaced rows of the group (deterministic), for IVF k-means."""
    pick = rows if len(rows) <= n else rows[np.linspace(0, len(rows) - 1, n).astype(np.int64)]
    return np.ascontiguousarray(source[pick], dtype=np.float32)


def _build_subindex(source: np.ndarray, rows: np.ndarray, start: int, cfg: EvalConfig, gpu_res: Any) -> Any:
    """IDMap(FAISS index) over ``source[rows]`` with global ids ``start + rows``, added in chunks."""
    import faiss

    dim = source.shape[1]
    n = len(rows)
    if cfg.index_type == "flat":
        inner = faiss.IndexFlatIP(dim)
    elif cfg.index_type == "ivf":
        nlist = max(1, min(cfg.ivf_nlist, n // 39))
        inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        inner.train(_training_sample(source, rows, 256 * nlist))  # FAISS samples 256 points per list anyway
        inner.nprobe = min(cfg.ivf_nprobe, nlist)
    else:  # hnsw
        if cfg.use_gpu:
            raise ValueError("evaluate.index_type=hnsw has no GPU index: use flat or ivf with use_gpu")
        inner = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efSearch = cfg.hnsw_ef_search
    if gpu_res is not None:
        inner = faiss.index_cpu_to_gpu(gpu_res, 0, inner)
    index = faiss.IndexIDMap(inner)
    for a in range(0, n, _ADD_CHUNK):
        part = rows[a : a + _ADD_CHUNK]
        x = np.ascontiguousarray(source[part], dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError(f"item vectors hold NaN or inf (item {start + part[np.flatnonzero(~np.isfinite(x).all(1))[0]]})")
        index.add_with_ids(x, (part + start).astype(np.int64))
    return index


class ShardSearcher:
    """One shard: FAISS sub-indices over item ids [start, stop). Runs in a Ray actor.

    ``vectors``: the slice itself [stop - start, D], or ``(VectorFile, start, stop)`` to
    read it from a file in the actor. ``group_by_domain``: one sub-index per domain
    (candidates = target domain) or one over the whole slice (candidates = all).
    """

    def __init__(
        self,
        vectors: np.ndarray | tuple[VectorFile, int, int],
        start: int,
        item_domain: np.ndarray,
        cfg: dict[str, Any],
        group_by_domain: bool,
        num_threads: int = 0,
    ):
        import faiss

        self.cfg = EvalConfig(**cfg)
        if num_threads > 0:
            faiss.omp_set_num_threads(num_threads)
        if isinstance(vectors, tuple):
            vfile, a, b = vectors
            source = np.load(vfile.path, mmap_mode="r")[a:b]  # pages are read as chunks are added
        else:
            source = np.asarray(vectors)
        if source.ndim != 2 or len(source) != len(item_domain):
            raise ValueError(f"shard at {start}: vectors {source.shape} vs {len(item_domain)} domains")
        self.start, self.stop, self.dim = start, start + len(source), source.shape[1]
        self.item_domain = np.asarray(item_domain, dtype=np.int8)
        if self.cfg.use_gpu and not hasattr(faiss, "StandardGpuResources"):
            raise RuntimeError("evaluate.use_gpu=true needs faiss-gpu (the `gpu` extra); this faiss is CPU-only")
        self._gpu_res = faiss.StandardGpuResources() if self.cfg.use_gpu else None
        self.groups: dict[int, tuple[Any, int]] = {}  # group -> (index, size)
        if group_by_domain:
            for d in np.unique(self.item_domain):
                rows = np.flatnonzero(self.item_domain == d)
                self.groups[int(d)] = (_build_subindex(source, rows, start, self.cfg, self._gpu_res), len(rows))
        elif len(source):
            rows = np.arange(len(source), dtype=np.int64)
            self.groups[ALL_ITEMS] = (_build_subindex(source, rows, start, self.cfg, self._gpu_res), len(rows))
        del source  # the file mapping: FAISS holds its own copy

    def info(self) -> dict[str, Any]:
        import faiss
        import psutil

        metrics = {int(i.metric_type) for i, _ in self.groups.values()}
        return {
            "start": self.start,
            "stop": self.stop,
            "dim": self.dim,
            "metric": "inner_product" if metrics <= {faiss.METRIC_INNER_PRODUCT} else f"other:{metrics}",
            "ntotal": int(sum(i.ntotal for i, _ in self.groups.values())),
            "groups": {g: n for g, (_, n) in self.groups.items()},
            "index_type": self.cfg.index_type,
            "vector_bytes": int((self.stop - self.start) * (self.dim * 4 + 8)),
            "rss_bytes": int(psutil.Process(os.getpid()).memory_info().rss),
        }

    def search(
        self, queries: np.ndarray, groups: np.ndarray, k: int, histories: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of this shard per query, within the query's group, history items removed."""
        nq = len(queries)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries have shape {queries.shape}; shard {self.start}:{self.stop} has dim {self.dim}")
        out_s = np.full((nq, k), -np.inf, dtype=np.float32)
        out_i = np.full((nq, k), EMPTY_ID, dtype=np.int64)
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            if int(g) not in self.groups:
                continue  # this shard has no candidates of the group
            s, i = self._search_group(int(g), np.ascontiguousarray(queries[rows], dtype=np.float32), k, histories[rows])
            out_s[rows], out_i[rows] = s, i
        return out_s, out_i

    def _in_group(self, hist: np.ndarray, group: int) -> np.ndarray:
        inside = (hist >= self.start) & (hist < self.stop)
        if group != ALL_ITEMS:
            local = np.clip(hist - self.start, 0, max(self.stop - self.start - 1, 0))
            inside &= self.item_domain[local] == group
        return inside

    def _search_group(
        self, group: int, queries: np.ndarray, k: int, hist: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        index, size = self.groups[group]
        if not self.cfg.exclude_history:
            hist = hist[:, :0]
        hist = np.where(self._in_group(hist, group), hist, EMPTY_ID)  # only ids that can come back
        n_hist = (hist != EMPTY_ID).sum(1)
        exact = self.cfg.index_type == "flat"
        # k + history hits guarantees k survivors after filtering; +1 exposes a tie at the boundary.
        fetch = np.minimum(size, k + n_hist + 1)
        out_s = np.empty((len(queries), k), dtype=np.float32)
        out_i = np.empty((len(queries), k), dtype=np.int64)
        todo = np.arange(len(queries))
        while len(todo):
            kk = int(fetch[todo].max())
            raw_s, raw_i = index.search(queries[todo], kk)
            excluded = (raw_i[:, :, None] == hist[todo][:, None, :]).any(-1) | (raw_i == EMPTY_ID)
            kept_i = np.where(excluded, EMPTY_ID, raw_i)
            s, i = sort_topk(raw_s, kept_i, k)
            if not exact or kk >= size:
                retry = np.zeros(len(todo), dtype=bool)
            else:
                # Unfetched items score <= the last fetched one; if that still ties the
                # k-th kept score (or too few survived), an unfetched item could belong.
                last = raw_s[:, -1]
                retry = (i[:, -1] == EMPTY_ID) | (last >= s[:, -1])
            done = todo[~retry]
            out_s[done], out_i[done] = s[~retry], i[~retry]
            todo = todo[retry]
            fetch[todo] = np.minimum(size, fetch[todo] * 2)
        return out_s, out_i


class ShardedIndex:
    """Driver-side handle on the shard actors. Build with :meth:`build`; close with :meth:`close`."""

    def __init__(self, actors: list[Any], bounds: list[tuple[int, int]], dim: int, n_domains: int, cfg: EvalConfig):
        self.actors, self.bounds, self.dim, self.n_domains, self.cfg = actors, bounds, dim, n_domains, cfg

    @classmethod
    def build(
        cls, item_vectors: Any, item_domain: np.ndarray, cfg: EvalConfig, n_domains: int | None = None
    ) -> ShardedIndex:
        """Start ``cfg.num_shards`` actors, each indexing one slice of ``item_vectors`` [N, D].

        ``item_vectors``: an array (numpy or torch; each slice travels through the object
        store) or a :class:`VectorFile` (each actor reads its slice itself: the driver holds
        only ``item_domain``, one byte per item, whatever the corpus size).
        """
        import ray

        validate_eval_config(cfg)
        item_domain = np.asarray(item_domain, dtype=np.int8)
        if isinstance(item_vectors, VectorFile):
            vectors = None
            n, dim = item_vectors.shape()
        else:
            vectors = _as_float32(item_vectors)
            if vectors.ndim != 2:
                raise ValueError(f"item_vectors has shape {vectors.shape}: expected [N, D]")
            n, dim = vectors.shape
            if not np.isfinite(vectors).all():
                raise ValueError("item_vectors hold NaN or inf: the export is broken")
        if n != len(item_domain):
            raise ValueError(f"item_vectors ({n}, {dim}) and item_domain ({len(item_domain)},) disagree")
        n_domains = int(n_domains if n_domains is not None else (item_domain.max() + 1 if len(item_domain) else 0))
        if cfg.use_gpu:
            import faiss

            # Actors asking for GPUs on a cluster without any would wait forever: fail now.
            if not hasattr(faiss, "StandardGpuResources") and not ray.cluster_resources().get("GPU", 0):
                raise RuntimeError("evaluate.use_gpu=true needs faiss-gpu (the `gpu` extra) and GPUs in the Ray "
                                   "cluster; this faiss is CPU-only and the cluster has no GPU")
        bounds = shard_bounds(n, cfg.num_shards)
        group = cfg.candidates == "target_domain"
        remote = ray.remote(ShardSearcher).options(
            num_cpus=cfg.shard_num_cpus, num_gpus=cfg.gpus_per_shard if cfg.use_gpu else 0
        )
        threads = max(1, int(cfg.shard_num_cpus))
        actors = [
            remote.remote(
                (item_vectors, a, b) if vectors is None else ray.put(vectors[a:b]),
                a, item_domain[a:b], asdict(cfg), group, threads,
            )
            for a, b in bounds
        ]
        index = cls(actors, bounds, dim, n_domains, cfg)
        try:
            index._check_parts(n)
        except BaseException:
            index.close()
            raise
        return index

    def _check_parts(self, n_items: int) -> None:
        import ray

        infos = ray.get([a.info.remote() for a in self.actors])
        for info, (a, b) in zip(infos, self.bounds, strict=True):
            if info["dim"] != self.dim or info["metric"] != "inner_product":
                raise ValueError(f"shard {a}:{b} has dim={info['dim']} metric={info['metric']}; expected dim={self.dim}, inner_product")
            if (info["start"], info["stop"]) != (a, b) or info["ntotal"] != b - a:
                raise ValueError(f"shard {a}:{b} indexed {info['ntotal']} items over {info['start']}:{info['stop']}")
        if sum(i["ntotal"] for i in infos) != n_items:
            raise ValueError("shards do not cover the corpus exactly")
        self.shard_info = infos

    def info(self) -> list[dict[str, Any]]:
        import ray

        return ray.get([a.info.remote() for a in self.actors])

    def search(
        self, queries: Any, target_domain: np.ndarray | None, k: int, histories: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Corpus top-k (scores [nq, k] float32, global ids [nq, k] int64, -1 = no candidate)."""
        import ray

        queries = _as_float32(queries)
        nq = len(queries)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries have shape {queries.shape}; the item vectors have dim {self.dim}")
        if self.cfg.candidates == "target_domain":
            if target_domain is None:
                raise ValueError("evaluate.candidates=target_domain needs target_domain per query")
            groups = np.asarray(target_domain, dtype=np.int64)
            if len(groups) != nq or (nq and (groups.min() < 0 or groups.max() >= self.n_domains)):
                raise ValueError(f"target_domain must be {nq} indices in 0..{self.n_domains - 1}")
        else:
            groups = np.full(nq, ALL_ITEMS, dtype=np.int64)
        hist = pad_histories(histories if self.cfg.exclude_history else None, nq)
        out_s = np.empty((nq, k), dtype=np.float32)
        out_i = np.empty((nq, k), dtype=np.int64)
        bs = self.cfg.query_batch_size
        pending: list[tuple[int, int, list[Any]]] = []

        def drain_one() -> None:
            a, b, futures = pending.pop(0)
            out_s[a:b], out_i[a:b] = merge_topk(ray.get(futures), k)

        for a in range(0, nq, bs):
            b = min(nq, a + bs)
            args = [ray.put(queries[a:b]), ray.put(groups[a:b]), k, ray.put(hist[a:b])]
            pending.append((a, b, [actor.search.remote(*args) for actor in self.actors]))
            if len(pending) >= self.cfg.max_inflight_batches:
                drain_one()
        while pending:
            drain_one()
        return out_s, out_i

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []

    def __enter__(self) -> ShardedIndex:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _as_float32(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().float().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)
