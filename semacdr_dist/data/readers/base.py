"""What every reader yields, and the row rules checked while reading.

A reader is a plain generator of :class:`Chunk` objects: item rows, interaction
rows, or (for data that ships its own split) ready-made sequence rows, each
with the file they came from and their row numbers, plus the rows it could
not accept (as REJECTED rows with the rule they broke). The prepare stage
decides what a rejected row means (stop, or write it to ``rejected/``); the
``read_*`` convenience functions stop at the first one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from semacdr_dist.data.schemas import INTERACTIONS, ITEMS, REJECTED, DataValidationError

# Interaction chunks carry the row number inside their source file so a rule
# broken later (unknown item, duplicate) can still name file and row.
ROW_COL = "_row"


@dataclass
class Chunk:
    """A piece of reader output. `kind` is items | interactions | sequences."""

    kind: str
    file: str
    table: pa.Table
    rejected: pa.Table | None = None


@dataclass
class ReaderOutput:
    """Everything a reader produced, concatenated (small data and tests)."""

    items: pa.Table
    interactions: pa.Table
    sequences: dict[str, pa.Table] = field(default_factory=dict)
    rejected: pa.Table | None = None


RULE_TITLE = "title must be non-empty UTF-8 text"
RULE_TIMESTAMP = "timestamp must be a non-negative integer"
RULE_UNKNOWN_ITEM = "item_id not in items"
RULE_DUPLICATE = "duplicate (user_id, item_id, timestamp)"
RULE_DUPLICATE_ITEM = "duplicate item"


def rejected_rows(file: str, rows: Iterable[int], rules: Iterable[str], records: Iterable) -> pa.Table:
    """REJECTED rows; `records` are dicts (or strings) serialised to JSON."""
    recs = [r if isinstance(r, str) else json.dumps(r, default=str, ensure_ascii=False) for r in records]
    rows = [int(r) for r in rows]
    return pa.table(
        {"file": [file] * len(rows), "row": rows, "rule": list(rules), "record": recs}, schema=REJECTED
    )


def split_by_mask(table: pa.Table, bad: np.ndarray, file: str, rows: np.ndarray, rule: str | list[str]):
    """(good rows, REJECTED rows) of `table` where `bad` is a boolean mask."""
    if not bad.any():
        return table, None
    idx = np.flatnonzero(bad)
    bad_tab = table.take(pa.array(idx))
    rules = [rule] * len(idx) if isinstance(rule, str) else [rule[i] for i in idx]
    rej = rejected_rows(file, rows[idx], rules, bad_tab.drop_columns([c for c in (ROW_COL,) if c in bad_tab.column_names]).to_pylist())
    return table.filter(pa.array(~bad)), rej


def decode_text(raw: bytes | str | None) -> str | None:
    """UTF-8 text, or None when the bytes are not valid UTF-8."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def check_items(items: pa.Table, file: str) -> tuple[pa.Table, pa.Table | None]:
    """Items (ITEMS + `_row`) with an empty/null title (non-UTF-8 arrives as null) are rejected."""
    title = items.column("title")
    bad = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(title)), 0), True)
    bad = bad.to_numpy(zero_copy_only=False)
    return split_by_mask(items, bad, file, items.column(ROW_COL).to_numpy(), RULE_TITLE)


def check_timestamps(inter: pa.Table, file: str) -> tuple[pa.Table, pa.Table | None]:
    """Interactions with a null (unparseable) or negative timestamp are rejected."""
    ts = inter.column("timestamp")
    bad = pc.fill_null(pc.less(ts, 0), True).to_numpy(zero_copy_only=False)
    rows = inter.column(ROW_COL).to_numpy()
    return split_by_mask(inter, bad, file, rows, RULE_TIMESTAMP)


def parse_timestamp(value) -> int | None:
    """An integer timestamp from JSON (int, integral float or digit string), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        s = value.strip()
        if s.lstrip("-").isdigit():
            return int(s)
    return None


ITEMS_ROWS = pa.schema(list(ITEMS) + [pa.field(ROW_COL, pa.int64(), nullable=False)])


def items_table(cols: dict[str, list]) -> pa.Table:
    """ITEMS + the source row number (titles may be null = not UTF-8)."""
    schema = pa.schema([f.with_nullable(True) if f.name == "title" else f for f in ITEMS_ROWS])
    return pa.table(cols, schema=schema)


INTERACTIONS_ROWS = pa.schema(list(INTERACTIONS) + [pa.field(ROW_COL, pa.int64(), nullable=False)])


def interactions_table(cols: dict[str, list | np.ndarray]) -> pa.Table:
    """INTERACTIONS + the source row number (timestamps may be null = unparseable)."""
    schema = pa.schema([f.with_nullable(True) if f.name == "timestamp" else f for f in INTERACTIONS_ROWS])
    return pa.table(cols, schema=schema)


def collect(chunks: Iterator[Chunk], strict: bool = True) -> ReaderOutput:
    """Concatenate a reader's chunks; with `strict`, stop at the first rejected row."""
    parts: dict[str, list[pa.Table]] = {"items": [], "interactions": []}
    seqs: dict[str, list[pa.Table]] = {}
    rejected: list[pa.Table] = []
    for ch in chunks:
        if ch.rejected is not None and ch.rejected.num_rows:
            if strict:
                first = ch.rejected.slice(0, 1).to_pylist()[0]
                raise DataValidationError(first["file"], first["row"], first["rule"], first["record"][:200])
            rejected.append(ch.rejected)
        if ch.kind == "sequences":
            split = ch.table.column("split")[0].as_py() if ch.table.num_rows else "train"
            seqs.setdefault(split, []).append(ch.table)
        else:
            parts[ch.kind].append(ch.table)
    items = (
        pa.concat_tables(parts["items"]).drop_columns([ROW_COL]).cast(ITEMS) if parts["items"] else ITEMS.empty_table()
    )
    inter = (
        pa.concat_tables(parts["interactions"]).drop_columns([ROW_COL]).cast(INTERACTIONS)
        if parts["interactions"]
        else INTERACTIONS.empty_table()
    )
    return ReaderOutput(
        items=items,
        interactions=inter,
        sequences={k: pa.concat_tables(v) for k, v in seqs.items()},
        rejected=pa.concat_tables(rejected) if rejected else None,
    )
