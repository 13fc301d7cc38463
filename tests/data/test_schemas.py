"""Every schema survives a parquet round trip; the validator names file, row and rule."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semacdr_dist.data.schemas import (
    INTERACTIONS,
    ITEMS,
    REJECTED,
    SEQUENCES,
    VIEWS,
    DataValidationError,
    features_schema,
    validate_table,
)

ROWS = {
    "items": (ITEMS, [{"item_id": 0, "domain": "food", "raw_id": "B0", "title": "Tea", "categories": ["a", "b"], "brand": "x", "description": "d"}]),
    "interactions": (INTERACTIONS, [{"user_id": 1, "item_id": 0, "domain": "food", "timestamp": 5}]),
    "sequences": (SEQUENCES, [{"user_id": 1, "split": "test", "target_domain": "food", "history": [3, 4], "history_domain": [0, 1], "target": 0}]),
    "views": (VIEWS, [{"item_id": 0, "view": "agnostic", "model": "m", "prompt_sha": "ab", "text": "t", "fallback": False, "faithfulness": 0.5, "attempts": 1, "generated_tokens": 9}]),
    "rejected": (REJECTED, [{"file": "f", "row": 3, "rule": "r", "record": "{}"}]),
    "features": (features_schema(3), [{"item_id": 0, "content": [1.0, 2.0, 3.0], "specific": [0.0] * 3, "agnostic": [1.0] * 3, "encoder": "e"}]),
}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_parquet_round_trip(tmp_path, name):
    schema, rows = ROWS[name]
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, tmp_path / "t.parquet")
    back = pq.read_table(tmp_path / "t.parquet")
    assert back.schema.equals(schema)
    assert back.to_pylist() == rows
    assert validate_table(back, schema, "t.parquet").equals(table)


def test_validator_names_file_row_and_rule():
    table = pa.table({"user_id": [1, None], "item_id": [0, 1], "domain": ["a", "a"], "timestamp": [1, 2]})
    with pytest.raises(DataValidationError) as err:
        validate_table(table, INTERACTIONS, "inter.parquet", row_offset=10)
    assert (err.value.file, err.value.row) == ("inter.parquet", 11)
    assert "user_id" in err.value.rule
    with pytest.raises(DataValidationError, match="missing column"):
        validate_table(table.drop_columns(["timestamp"]), INTERACTIONS, "inter.parquet")
    with pytest.raises(DataValidationError, match="must be int64"):
        validate_table(table.set_column(0, "user_id", pa.array([1, 2])).set_column(3, "timestamp", pa.array(["x", "y"])), INTERACTIONS, "inter.parquet")
