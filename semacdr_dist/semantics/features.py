"""``features/``: content + both view vectors per item, and the trainers' loader.

One features shard per items shard (same file name), so the stage streams
and a rerun skips shards already encoded with the same recipe (encoder, its
normalisation, the LLM and the prompt shas, stored in the shard's metadata).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from semacdr_dist.data.schemas import FEATURE_COLUMNS, ITEMS, features_schema, validate_table
from semacdr_dist.rundir import RunDir
from semacdr_dist.semantics.config import EncoderConfig, SemanticsStageConfig
from semacdr_dist.semantics.prompts import content_text
from semacdr_dist.semantics.views import read_views
from semacdr_dist.semantics.workers import EncodeTexts

log = logging.getLogger(__name__)

_META_KEY = b"semacdr.features"


def _recipe(cfg: SemanticsStageConfig, shas: dict[str, str]) -> str:
    blob = json.dumps(
        {"encoder": cfg.encoder.model, "backend": cfg.encoder.backend, "normalize": cfg.encoder.normalize,
         "max_seq_length": cfg.encoder.max_seq_length, "llm": cfg.llm.model, "shas": shas},
        sort_keys=True,
    )  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _shard_recipe(run: RunDir, fname: str) -> str | None:
    if not run.exists("features", fname):
        return None
    meta = pq.read_schema(run.path("features", fname), filesystem=run.fs).metadata or {}
    raw = meta.get(_META_KEY)
    return json.loads(raw)["recipe"] if raw else None


def _shard_texts(run: RunDir, fname: str, model: str, shas: dict[str, str]) -> tuple[np.ndarray, list[str]]:
    """item ids and 3 texts per item (content, specific, agnostic) for one items shard."""
    items = validate_table(run.read_table("items", fname), ITEMS, file=run.uri_of("items", fname))
    ids = items.column("item_id").to_numpy()
    views = read_views(run, model, shas, ["item_id", "view", "text"], (int(ids.min()), int(ids.max())))
    texts_by_view = {}
    for view in ("specific", "agnostic"):
        t = views.filter(pc.equal(views["view"], view))
        mapping = dict(zip(t["item_id"].to_pylist(), t["text"].to_pylist(), strict=True))
        missing = [int(i) for i in ids if int(i) not in mapping]
        if missing:
            raise RuntimeError(
                f"{run.uri_of('views')}: no '{view}' view for item(s) {missing[:10]} of {fname} "
                f"(model {model}, prompt_sha {shas[view]}); rerun the semantics stage to generate them"
            )
        texts_by_view[view] = [mapping[int(i)] for i in ids]
    content = [content_text(r) for r in items.to_pylist()]
    texts = [t for triple in zip(content, texts_by_view["specific"], texts_by_view["agnostic"], strict=True) for t in triple]
    return ids, texts


def encoded_texts(texts: list[str], encoder_path: str, enc: EncoderConfig) -> Iterator[dict[str, np.ndarray]]:
    """Batches of ``pos`` (index into ``texts``), ``vector``, ``dtype``, ``dtype_reason``, as they
    come out of a Ray Data ``map_batches`` over an actor pool of ``enc.num_actors`` encoders
    (Ray Data restarts a failed encoder actor and re-runs its batch)."""
    import ray

    table = pa.table({"pos": pa.array(np.arange(len(texts), dtype=np.int64)), "text": pa.array(texts, pa.string())})
    ds = ray.data.from_arrow(table).map_batches(
        EncodeTexts,
        fn_constructor_kwargs={"model_path": encoder_path, "cfg": enc},
        batch_size=max(1, enc.items_per_call) * 3,
        batch_format="numpy",
        concurrency=enc.num_actors,
        num_cpus=enc.num_cpus,
        num_gpus=1 if enc.use_gpu else 0,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": str(enc.omp_threads)}},
    )
    yield from ds.iter_batches(batch_format="numpy", batch_size=None)


def encode_texts(texts: list[str], encoder_path: str, enc: EncoderConfig) -> np.ndarray:
    """float32 [len(texts), dim] in ``texts`` order, through :func:`encoded_texts`."""
    parts = list(encoded_texts(texts, encoder_path, enc))
    pos = np.concatenate([p["pos"] for p in parts])
    vec = np.concatenate([np.asarray(p["vector"], dtype=np.float32) for p in parts])
    out = np.empty_like(vec)
    out[pos] = vec
    return out


def build_features(cfg: SemanticsStageConfig, run: RunDir, encoder_path: str, shas: dict[str, str]) -> dict:
    """Encode every items shard whose features are missing or stale; returns counters.

    The texts of every such shard go through one Ray Data map (one encoder start-up); a
    shard is written as soon as all its vectors are back, so a kill loses only unwritten shards.
    """
    enc = cfg.encoder
    recipe = _recipe(cfg, shas)
    todo = [f for f in run.list_files("items") if _shard_recipe(run, f) != recipe]
    stats = {"items": 0, "shards_encoded": len(todo), "seconds": 0.0, "encoder": enc.model}
    if not todo:
        stats["items"] = sum(pq.ParquetFile(run.path("features", f), filesystem=run.fs).metadata.num_rows
                             for f in run.list_files("features"))  # fmt: skip
        return stats
    t0 = time.perf_counter()
    shards, texts = [], []
    for fname in todo:
        ids, shard_texts = _shard_texts(run, fname, cfg.llm.model, shas)
        shards.append((fname, ids, len(texts)))
        texts.extend(shard_texts)
    vectors: np.ndarray | None = None
    left = np.array([3 * len(ids) for _, ids, _ in shards])  # texts still to come, per shard
    starts = np.array([start for _, _, start in shards])
    for batch in encoded_texts(texts, encoder_path, enc):
        vec = np.asarray(batch["vector"], dtype=np.float32)
        if vectors is None:
            vectors = np.empty((len(texts), vec.shape[1]), dtype=np.float32)
            stats["dtype"], stats["dtype_reason"] = str(batch["dtype"][0]), str(batch["dtype_reason"][0])
        vectors[batch["pos"]] = vec
        shard_of = np.searchsorted(starts, batch["pos"], side="right") - 1
        np.subtract.at(left, shard_of, 1)
        for k in np.unique(shard_of):
            if left[k] == 0:
                fname, ids, start = shards[k]
                _write_shard(run, fname, ids, vectors[start : start + 3 * len(ids)], enc, recipe, shas)
                stats["items"] += len(ids)
                log.info("features: %s (%d items) encoded", fname, len(ids))
    if left.any():
        raise RuntimeError(f"the encoder returned {len(texts) - int(left.sum())} of {len(texts)} vectors")
    stats["seconds"] = time.perf_counter() - t0
    stats["items_per_s"] = stats["items"] / max(stats["seconds"], 1e-9)
    stats["items"] = sum(pq.ParquetFile(run.path("features", f), filesystem=run.fs).metadata.num_rows
                         for f in run.list_files("features"))  # fmt: skip
    return stats


def _write_shard(run: RunDir, fname: str, ids: np.ndarray, vectors: np.ndarray, enc: EncoderConfig, recipe: str,
                 shas: dict[str, str]) -> None:
    """features/<fname>: item_id, content/specific/agnostic vectors (texts in that order per item)."""
    dim = vectors.shape[1]
    schema = features_schema(dim).with_metadata({_META_KEY: json.dumps({"recipe": recipe, "shas": shas}).encode()})
    mat = vectors.reshape(len(ids), 3, dim)
    cols = [pa.array(ids, pa.int64())]
    for j, _name in enumerate(FEATURE_COLUMNS):
        flat = pa.array(np.ascontiguousarray(mat[:, j, :]).ravel(), pa.float32())
        cols.append(pa.FixedSizeListArray.from_arrays(flat, dim))
    cols.append(pa.array([enc.model] * len(ids), pa.string()))
    run.write_table(f"features/{fname}", pa.Table.from_arrays(cols, schema=schema))


def load_feature_matrices(run: RunDir, n_items: int) -> dict[str, np.ndarray]:
    """{content, specific, agnostic}: float32 [n_items, d] in item_id order.

    Raises when an item id is missing, repeated or out of range, or when the
    shards disagree on the dimension or the encoder.
    """
    files = run.list_files("features")
    if not files:
        raise FileNotFoundError(f"{run.uri_of('features')}: no features shards; run the semantics stage")
    out: dict[str, np.ndarray] | None = None
    seen = np.zeros(n_items, bool)
    encoder = None
    for fname in files:
        t = run.read_table("features", fname)
        where = run.uri_of("features", fname)
        dim = t.schema.field("content").type.list_size
        t = validate_table(t, features_schema(dim), file=where)
        if out is None:
            out = {c: np.zeros((n_items, dim), np.float32) for c in FEATURE_COLUMNS}
        elif out["content"].shape[1] != dim:
            raise ValueError(f"{where}: vector dimension {dim} != {out['content'].shape[1]} of earlier shards")
        names = set(t["encoder"].to_pylist())
        if len(names) != 1 or (encoder is not None and names != {encoder}):
            raise ValueError(f"{where}: encoder(s) {sorted(names)} differ from {encoder!r} of earlier shards")
        encoder = names.pop()
        ids = t["item_id"].to_numpy()
        bad = np.flatnonzero((ids < 0) | (ids >= n_items))
        if bad.size:
            raise ValueError(f"{where}, row {bad[0]}: item_id {ids[bad[0]]} outside [0, {n_items})")
        dup = np.flatnonzero(seen[ids])
        if dup.size or len(np.unique(ids)) != len(ids):
            row = int(dup[0]) if dup.size else 0
            raise ValueError(f"{where}, row {row}: item_id {ids[row]} appears more than once in features/")
        seen[ids] = True
        for c in FEATURE_COLUMNS:
            out[c][ids] = t[c].combine_chunks().flatten().to_numpy().reshape(len(ids), dim)
    if not seen.all():
        missing = np.flatnonzero(~seen)
        raise ValueError(f"{run.uri_of('features')}: no features for {missing.size} item(s), e.g. {missing[:10].tolist()}")
    assert out is not None
    return out
