"""Reading and writing ``views/``: keys present, shards written whole, current rows."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from semacdr_dist.data.schemas import VIEW_NAMES, VIEWS, validate_table
from semacdr_dist.rundir import RunDir


def write_views(run: RunDir, name: str, rows: list[dict]) -> str:
    """One whole VIEWS shard (atomic: a kill leaves either all of it or nothing)."""
    for r in rows:
        f = r.get("faithfulness")
        if f is not None and not math.isfinite(f):
            r["faithfulness"] = None
    table = pa.Table.from_pylist(rows, schema=VIEWS)
    return run.write_table(f"views/{name}", table)


def views_dataset(run: RunDir) -> ds.Dataset | None:
    """All finished views shards (temporaries excluded), or None when there are none."""
    files = [run.path("views", f) for f in run.list_files("views")]
    if not files:
        return None
    return ds.dataset(files, schema=VIEWS, format="parquet", filesystem=run.fs)


def _current(model: str, shas: dict[str, str]) -> ds.Expression:
    expr = None
    for view, sha in shas.items():
        e = (pc.field("view") == view) & (pc.field("prompt_sha") == sha)
        expr = e if expr is None else (expr | e)
    return (pc.field("model") == model) & expr


def read_views(
    run: RunDir,
    model: str,
    shas: dict[str, str],
    columns: list[str] | None = None,
    item_range: tuple[int, int] | None = None,
) -> pa.Table:
    """Rows of the current prompts (optionally item_id in [lo, hi]); empty table if none."""
    dset = views_dataset(run)
    cols = columns or VIEWS.names
    if dset is None:
        return VIEWS.empty_table().select(cols)
    expr = _current(model, shas)
    if item_range is not None:
        expr = expr & (pc.field("item_id") >= item_range[0]) & (pc.field("item_id") <= item_range[1])
    return dset.to_table(columns=cols, filter=expr)


def existing_keys(run: RunDir, model: str, shas: dict[str, str]) -> dict[str, np.ndarray]:
    """Sorted item ids that already have each view (current model + prompt)."""
    t = read_views(run, model, shas, columns=["item_id", "view"])
    out = {}
    for v in VIEW_NAMES:
        ids = t.filter(pc.equal(t.column("view"), v)).column("item_id").to_numpy()
        out[v] = np.unique(ids)
    return out


def drop_views(run: RunDir, model: str, shas: dict[str, str]) -> int:
    """Rewrite each shard without the current prompts' rows (llm.regenerate=true)."""
    dropped = 0
    for fname, table in run.iter_tables("views"):
        table = validate_table(table, VIEWS, file=run.uri_of("views", fname))
        mask = np.zeros(table.num_rows, bool)
        for v, sha in shas.items():
            mask |= (
                pc.and_(
                    pc.and_(pc.equal(table["model"], model), pc.equal(table["view"], v)),
                    pc.equal(table["prompt_sha"], sha),
                )
                .to_numpy(zero_copy_only=False)
                .astype(bool)
            )
        if not mask.any():
            continue
        dropped += int(mask.sum())
        rest = table.filter(pa.array(~mask))
        if rest.num_rows:
            run.write_table(f"views/{fname}", rest)
        else:
            run.delete("views", fname)
    return dropped
