"""The portable view cache: views keyed by item content, reusable by any run or machine.

A cache is a directory of parquet files (local path or any ``pyarrow.fs``
URI) with the VIEWS columns except ``item_id``, replaced by ``content_hash`` =
sha256 of (domain, raw_id, content text). A catalog generated once (hours on
a CPU, minutes on a GPU) is imported by any later run whose items hash the same.
"""

from __future__ import annotations

import logging
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from semacdr_dist.data.schemas import ITEMS, VIEW_NAMES, VIEWS, validate_table
from semacdr_dist.rundir import RunDir
from semacdr_dist.semantics.prompts import content_hash, content_text
from semacdr_dist.semantics.views import existing_keys, read_views, write_views

log = logging.getLogger(__name__)

CACHE = pa.schema([pa.field("content_hash", pa.string(), nullable=False)] + [f for f in VIEWS if f.name != "item_id"])


def _item_hashes(table: pa.Table) -> list[str]:
    return [content_hash(r["domain"], r["raw_id"], content_text(r)) for r in table.to_pylist()]


def _cache_rows(cache: RunDir, model: str, shas: dict[str, str]) -> dict[tuple[str, str], dict]:
    """(content_hash, view) -> row, for the current model and prompts."""
    out: dict[tuple[str, str], dict] = {}
    for fname, t in cache.iter_tables():
        t = validate_table(t, CACHE, file=cache.uri_of(fname))
        for view, sha in shas.items():
            sel = t.filter(pc.and_(pc.and_(pc.equal(t["model"], model), pc.equal(t["view"], view)), pc.equal(t["prompt_sha"], sha)))
            for r in sel.to_pylist():
                out[(r["content_hash"], view)] = r
    return out


def import_view_cache(run: RunDir, cache_uri: str, model: str, shas: dict[str, str]) -> int:
    """Copy cached views of missing keys into ``views/``; returns the number of rows imported."""
    cache = RunDir(cache_uri)
    cached = _cache_rows(cache, model, shas)
    if not cached:
        return 0
    done = existing_keys(run, model, shas)
    token = uuid.uuid4().hex[:8]
    imported = 0
    for fname, items in run.iter_tables("items"):
        items = validate_table(items, ITEMS, file=run.uri_of("items", fname))
        rows = []
        ids = items["item_id"].to_numpy()
        for item_id, h in zip(ids, _item_hashes(items), strict=True):
            for view in VIEW_NAMES:
                hit = cached.get((h, view))
                if hit is not None and not np.isin(item_id, done[view]):
                    row = {k: v for k, v in hit.items() if k != "content_hash"}
                    rows.append({"item_id": int(item_id), **row})
        if rows:
            write_views(run, f"part-cache-{token}-{fname}", rows)
            imported += len(rows)
    log.info("view cache %s: imported %d views", cache_uri, imported)
    return imported


def export_view_cache(run: RunDir, cache_uri: str, model: str, shas: dict[str, str]) -> int:
    """Append the current views that the cache lacks; returns the number of rows exported."""
    cache = RunDir(cache_uri)
    have = set(_cache_rows(cache, model, shas))
    token = uuid.uuid4().hex[:8]
    exported = 0
    for fname, items in run.iter_tables("items"):
        items = validate_table(items, ITEMS, file=run.uri_of("items", fname))
        ids = items["item_id"].to_numpy()
        hashes = dict(zip(ids.tolist(), _item_hashes(items), strict=True))
        views = read_views(run, model, shas, item_range=(int(ids.min()), int(ids.max())))
        rows = []
        for r in views.to_pylist():
            h = hashes.get(r["item_id"])
            if h is None or (h, r["view"]) in have:
                continue
            have.add((h, r["view"]))
            rows.append({"content_hash": h, **{k: v for k, v in r.items() if k != "item_id"}})
        if rows:
            cache.write_table(f"part-{token}-{fname}", pa.Table.from_pylist(rows, schema=CACHE))
            exported += len(rows)
    log.info("view cache %s: exported %d views", cache_uri, exported)
    return exported
