"""Reader of a parquet or CSV pair already in our schema: `items` (ITEMS columns,
any unique int64 `item_id`) and `interactions` (INTERACTIONS columns).

Both are streamed in batches. Values are checked per row: integer ids and
timestamps (CSV: strings parsed here, so one bad cell names its row instead of
failing the file), UTF-8 non-empty titles. CSV `categories` are `|`-separated.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from semacdr_dist.data.config import DataConfig
from semacdr_dist.data.readers.base import (
    ROW_COL,
    Chunk,
    ReaderOutput,
    check_items,
    check_timestamps,
    collect,
    split_by_mask,
)
from semacdr_dist.data.schemas import INTERACTIONS, ITEMS, DataValidationError

INT_RE = r"^\s*-?[0-9]+\s*$"


def tabular_paths(data: DataConfig) -> tuple[str, str]:
    """The items and interactions files: explicit, else `<data.path>/items.{parquet,csv}` etc."""
    found = []
    for name, explicit in (("items", data.tabular.items), ("interactions", data.tabular.interactions)):
        if explicit:
            found.append(explicit)
            continue
        if not data.path:
            raise ValueError(f"data.source=tabular needs data.path or data.tabular.{name}")
        for ext in ("parquet", "csv"):
            cand = os.path.join(data.path, f"{name}.{ext}")
            if "://" in cand or os.path.exists(cand):
                found.append(cand)
                break
        else:
            raise DataValidationError(os.path.join(data.path, f"{name}.parquet"), None, "file not found (nor .csv)")
    return found[0], found[1]


def _batches(path: str, chunk_rows: int) -> Iterator[pa.Table]:
    fs, p = pafs.FileSystem.from_uri(path if "://" in path else os.path.abspath(path))
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        raise DataValidationError(path, None, "file not found")
    if p.endswith(".csv") or p.endswith(".csv.gz"):
        stream = fs.open_input_stream(p, compression="gzip" if p.endswith(".gz") else None)
        opts = pacsv.ReadOptions(block_size=1 << 22)
        conv = pacsv.ConvertOptions(column_types={n: pa.binary() for n in ITEMS.names + INTERACTIONS.names})
        try:
            reader = pacsv.open_csv(stream, read_options=opts, convert_options=conv)
            for batch in reader:
                yield pa.Table.from_batches([batch])
        except pa.ArrowInvalid as err:
            raise DataValidationError(path, None, "unreadable CSV", str(err)) from err
        return
    with fs.open_input_file(p) as f:
        pf = pq.ParquetFile(f)
        # One reader per row group: a reader over the whole file keeps ~18 bytes per row it
        # has read alive until it is closed (3 GB after 100M rows; pyarrow 26).
        for group in range(pf.num_row_groups):
            for batch in pf.iter_batches(batch_size=chunk_rows, row_groups=[group]):
                yield pa.Table.from_batches([batch])


def _as_int(col: pa.ChunkedArray) -> pa.Array:
    """int64 values; null where a cell is not an integer."""
    if pa.types.is_integer(col.type):
        return col.combine_chunks().cast(pa.int64())
    if pa.types.is_floating(col.type):
        arr = col.combine_chunks()
        ok = pc.and_(pc.is_finite(arr), pc.equal(pc.floor(arr), arr))
        return pc.if_else(ok, pc.cast(pc.if_else(ok, arr, 0.0), pa.int64()), pa.nulls(len(arr), pa.int64()))
    text = pc.cast(col.combine_chunks(), pa.string()) if pa.types.is_binary(col.type) else col.combine_chunks().cast(pa.string())
    ok = pc.fill_null(pc.match_substring_regex(text, INT_RE), False)
    clean = pc.if_else(ok, pc.utf8_trim_whitespace(text), "0")
    return pc.if_else(ok, pc.cast(clean, pa.int64()), pa.nulls(len(text), pa.int64()))


def _as_text(col: pa.ChunkedArray) -> pa.Array:
    """UTF-8 strings; null where a value is not valid UTF-8."""
    arr = col.combine_chunks()
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        try:
            arr.validate(full=True)
            return arr.cast(pa.string())
        except pa.ArrowInvalid:
            arr = arr.cast(pa.binary()) if pa.types.is_string(arr.type) else arr.cast(pa.large_binary())
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        out = []
        for v in arr.to_pylist():
            try:
                out.append(None if v is None else v.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(None)
        return pa.array(out, pa.string())


def _require(table: pa.Table, schema: pa.Schema, file: str) -> None:
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise DataValidationError(file, None, f"missing column(s) {missing}", f"has {table.column_names}")


def _int_columns(table: pa.Table, names: list[str], file: str, rows: np.ndarray):
    """Cast id columns to int64, rejecting rows whose cell is not an integer."""
    rejected = []
    for name in names:
        vals = _as_int(table.column(name))
        bad = pc.is_null(vals).to_numpy(zero_copy_only=False)
        table = table.set_column(table.schema.get_field_index(name), name, vals)
        table, rej = split_by_mask(table, bad, file, rows, f"{name} must be an integer")
        rows = rows[~bad]
        if rej is not None:
            rejected.append(rej)
    return table, rows, rejected


def iter_tabular(items_path: str, interactions_path: str, chunk_rows: int = 250_000) -> Iterator[Chunk]:
    row = 0
    for batch in _batches(items_path, chunk_rows):
        _require(batch, ITEMS, items_path)
        rows = np.arange(row, row + batch.num_rows)
        row += batch.num_rows
        table = batch.select(ITEMS.names)
        cats = table.column("categories")
        if pa.types.is_string(cats.type) or pa.types.is_binary(cats.type):
            text = pc.fill_null(_as_text(cats), "")
            cats = pa.array([[c for c in t.split("|") if c] for t in text.to_pylist()], pa.list_(pa.string()))
        table = pa.table(
            {
                "item_id": table.column("item_id"),
                "domain": pc.fill_null(_as_text(table.column("domain")), ""),
                "raw_id": pc.fill_null(_as_text(table.column("raw_id")), ""),
                "title": _as_text(table.column("title")),
                "categories": cats,
                "brand": _as_text(table.column("brand")),
                "description": _as_text(table.column("description")),
            }
        )
        table, rows, rejected = _int_columns(table, ["item_id"], items_path, rows)
        items = table.append_column(ROW_COL, pa.array(rows, pa.int64()))
        good, rej = check_items(items, items_path)
        yield Chunk("items", items_path, good, pa.concat_tables(rejected + ([rej] if rej is not None else [])) if rejected or rej is not None else None)

    row = 0
    for batch in _batches(interactions_path, chunk_rows):
        _require(batch, INTERACTIONS, interactions_path)
        rows = np.arange(row, row + batch.num_rows)
        row += batch.num_rows
        table = batch.select(INTERACTIONS.names)
        table = table.set_column(2, "domain", pc.fill_null(_as_text(table.column("domain")), ""))
        table = table.set_column(3, "timestamp", _as_int(table.column("timestamp")))
        table, rows, rejected = _int_columns(table, ["user_id", "item_id"], interactions_path, rows)
        table = table.append_column(ROW_COL, pa.array(rows, pa.int64()))
        good, rej = check_timestamps(table, interactions_path)
        if rej is not None:
            rejected.append(rej)
        yield Chunk("interactions", interactions_path, good, pa.concat_tables(rejected) if rejected else None)


def read_tabular(items_path: str, interactions_path: str) -> ReaderOutput:
    """Items and interactions; stops at the first bad row."""
    return collect(iter_tabular(items_path, interactions_path))
