"""The data contracts between the stages as pyarrow schemas, and one validator.

Every stage checks its input with :func:`validate_table` when it reads it, so a
bad row is reported with the file, the row number and the rule it breaks.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

ITEMS = pa.schema(
    [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("raw_id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("categories", pa.list_(pa.string())),
        pa.field("brand", pa.string()),
        pa.field("description", pa.string()),
    ]
)

INTERACTIONS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("timestamp", pa.int64(), nullable=False),
    ]
)

SEQUENCES = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # train | valid | test
        pa.field("target_domain", pa.string(), nullable=False),
        pa.field("history", pa.list_(pa.int64()), nullable=False),
        pa.field("history_domain", pa.list_(pa.int8()), nullable=False),
        pa.field("target", pa.int64(), nullable=False),
    ]
)

VIEWS = pa.schema(
    [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("view", pa.string(), nullable=False),  # specific | agnostic
        pa.field("model", pa.string(), nullable=False),
        pa.field("prompt_sha", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("fallback", pa.bool_(), nullable=False),
        pa.field("faithfulness", pa.float32()),
        pa.field("attempts", pa.int32()),
        pa.field("generated_tokens", pa.int32()),
    ]
)

VIEW_NAMES = ("specific", "agnostic")
FEATURE_COLUMNS = ("content", "specific", "agnostic")


def features_schema(dim: int) -> pa.Schema:
    """`features`: one fixed-size float32 vector column per view + the encoder name."""
    vec = pa.list_(pa.float32(), dim)
    return pa.schema(
        [pa.field("item_id", pa.int64(), nullable=False)]
        + [pa.field(c, vec, nullable=False) for c in FEATURE_COLUMNS]
        + [pa.field("encoder", pa.string(), nullable=False)]
    )


REJECTED = pa.schema(
    [
        pa.field("file", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("rule", pa.string()),
        pa.field("record", pa.string()),  # the offending row as JSON
    ]
)

SPLITS = ("train", "valid", "test")


class DataValidationError(ValueError):
    """A row broke a data contract. The message names file, row and rule."""

    def __init__(self, file: str, row: int | None, rule: str, detail: str = ""):
        self.file, self.row, self.rule, self.detail = file, row, rule, detail
        where = f"{file}, row {row}" if row is not None else file
        super().__init__(f"{where}: {rule}" + (f" ({detail})" if detail else ""))


def _first_bad(mask: pa.ChunkedArray | pa.Array) -> int | None:
    """Index of the first True in a boolean mask (nulls count as False)."""
    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return None
    return pc.index(mask, True).as_py()


def validate_table(table: pa.Table, schema: pa.Schema, file: str, row_offset: int = 0) -> pa.Table:
    """Check columns, types and non-null fields; return the table cast to `schema`.

    Raises :class:`DataValidationError` naming the first offending row
    (``row_offset`` + index in ``table``) and the rule.
    """
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise DataValidationError(file, None, f"missing column(s) {missing}", f"has {table.column_names}")
    table = table.select([f.name for f in schema])
    for f in schema:
        col = table.column(f.name)
        if not col.type.equals(f.type):
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise DataValidationError(
                    file, None, f"column '{f.name}' must be {f.type}", f"got {col.type}: {err}"
                ) from err
            table = table.set_column(table.schema.get_field_index(f.name), f.name, col)
        if not f.nullable and col.null_count:
            bad = _first_bad(pc.is_null(col))
            raise DataValidationError(file, row_offset + bad, f"'{f.name}' must not be null")
    return table.cast(schema)
