"""The prepare stage end to end on a local Ray: outputs, idempotence, shipped splits, k-core,
and every bad-input rule in both modes (error / reject)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from semacdr_dist.config import load_config
from semacdr_dist.data.catalog import load_catalog
from semacdr_dist.data.prepare import run_prepare
from semacdr_dist.data.readers.base import (
    RULE_DUPLICATE,
    RULE_TIMESTAMP,
    RULE_TITLE,
    RULE_UNKNOWN_ITEM,
)
from semacdr_dist.data.schemas import INTERACTIONS, ITEMS, SEQUENCES, DataValidationError
from semacdr_dist.pipeline import prepare_config
from semacdr_dist.rundir import RunDir

from .test_readers import write_llmcdsr


def _cfg(tmp_path, *overrides):
    cfg = load_config(["data=synthetic_small", f"run_dir={tmp_path / 'run'}", *overrides])
    return cfg, RunDir(cfg.run_dir)


def test_synthetic_end_to_end(ray_local, tmp_path):
    cfg, run = _cfg(tmp_path, "data.num_partitions=3")
    stats = run_prepare(prepare_config(cfg), run)
    items = run.read_table("items")
    inter = run.read_table("interactions")
    assert items.schema.equals(ITEMS) and items["item_id"].to_pylist() == list(range(300))
    assert inter.schema.equals(INTERACTIONS)
    assert stats["domains"] == ["food", "kitchen"] and stats["n_items"] == 300
    assert stats["n_interactions"] == inter.num_rows and stats["n_users"] == 400
    assert stats["examples"]["valid"] == stats["examples"]["test"] == 400  # every synthetic user has >= 3 events
    assert stats["overlapping_users"] > 200 and 0.1 < stats["cold_start_share"]["kitchen"] < 0.7
    assert set(stats["history_length_quantiles"]) >= {"p50", "p90"} and stats["rejected"]["total"] == 0
    assert load_catalog(run).n_items == 300

    # leave-one-out by time: test = the user's last interaction, valid = the one before
    seqs = {s: run.read_table("sequences", s) for s in ("train", "valid", "test")}
    assert all(t.schema.equals(SEQUENCES) for t in seqs.values())
    order = inter.sort_by([("user_id", "ascending"), ("timestamp", "ascending")])
    per_user: dict[int, list[int]] = {}
    for u, i in zip(order["user_id"].to_pylist(), order["item_id"].to_pylist(), strict=True):
        per_user.setdefault(u, []).append(i)
    item_dom = np.array([0 if d == "food" else 1 for d in items["domain"].to_pylist()])
    for split, back in (("test", 1), ("valid", 2)):
        for row in seqs[split].to_pylist():
            hist = per_user[row["user_id"]]
            assert row["target"] == hist[-back]
            assert row["history"] == hist[:-back][-cfg.data.max_history:]
            assert row["history_domain"] == item_dom[row["history"]].tolist()
            assert row["target_domain"] == ("food", "kitchen")[item_dom[row["target"]]]
    assert seqs["train"].num_rows == sum(len(h) - 3 for h in per_user.values())
    assert pc.max(pc.list_value_length(seqs["train"]["history"])).as_py() == cfg.data.max_history

    _assert_matches_single_process(run, seqs, cfg.data.max_history)

    # idempotent: a rerun skips, force redoes
    marker = run.path("prepare", "_SUCCESS.json")
    mtime = run.fs.get_file_info(marker).mtime
    assert run_prepare(prepare_config(cfg), run) == stats
    assert run.fs.get_file_info(marker).mtime == mtime
    cfg.force = True
    cfg.data.train_examples, cfg.data.train_last_n = "last_n", 2
    again = run_prepare(prepare_config(cfg), run)
    assert again["examples"]["train"] == sum(min(2, len(h) - 3) for h in per_user.values())
    assert run.fs.get_file_info(marker).mtime != mtime


def test_llmcdsr_shipped_split(ray_local, tmp_path):
    cfg, run = _cfg(tmp_path, "data=food_kitchen", f"data.path={write_llmcdsr(tmp_path / 'fk')}", "data.max_history=2")
    stats = run_prepare(prepare_config(cfg), run)
    assert stats["split"] == "shipped" and stats["examples"] == {"train": 2 + 1 + 2 + 3, "valid": 1, "test": 2}
    test = run.read_table("sequences", "test").sort_by("user_id").to_pylist()
    assert [(t["history"], t["target"], t["target_domain"]) for t in test] == [([3, 1], 4, "kitchen"), ([2], 0, "food")]


@pytest.mark.slow
def test_food_kitchen_prepare(ray_local, tmp_path, food_kitchen_dir):
    cfg, run = _cfg(tmp_path, "data=food_kitchen", f"data.path={food_kitchen_dir}")
    stats = run_prepare(prepare_config(cfg), run)
    assert stats["n_items"] == 36_298 and stats["items_per_domain"] == {"food": 8_661, "kitchen": 27_637}
    assert stats["examples"]["valid"] == 960 and stats["examples"]["test"] == 937


# --------------------------------------------------------------------------- bad input
def _write_tabular(root, items_rows=None, inter_rows=None, drop_col=None):
    """items: a (2 items) + b (2 items); interactions: 2 users over both domains."""
    root.mkdir(parents=True, exist_ok=True)
    items = items_rows or [
        (1, "a", "A1", "Lemon tea"), (2, "a", "A2", "Oat crackers"), (3, "b", "B1", "Tea kettle"), (4, "b", "B2", "Chef knife"),
    ]
    inter = inter_rows or [(7, 1, "a", 1), (7, 3, "b", 2), (7, 2, "a", 3), (7, 4, "b", 4), (8, 2, "a", 1), (8, 4, "b", 2), (8, 1, "a", 3)]
    it = "item_id,domain,raw_id,title,categories,brand,description\n" + "".join(f"{i},{d},{r},{t},,,\n" for i, d, r, t in items)
    ix = "user_id,item_id,domain,timestamp\n" + "".join(f"{u},{i},{d},{ts}\n" for u, i, d, ts in inter)
    if drop_col:
        lines = [line.split(",") for line in ix.splitlines()]
        k = lines[0].index(drop_col)
        ix = "\n".join(",".join(x[:k] + x[k + 1:]) for x in lines) + "\n"
    (root / "items.csv").write_bytes(it.encode("utf-8", "surrogateescape"))
    (root / "interactions.csv").write_text(ix)
    return root


BAD_CASES = {
    "missing column": ({"drop_col": "timestamp"}, "interactions.csv", None, "missing column"),
    "unknown item": ({"inter_rows": [(7, 1, "a", 1), (7, 3, "b", 2), (7, 99, "a", 3), (8, 2, "a", 1), (8, 4, "b", 2)]}, "interactions.csv", 2, RULE_UNKNOWN_ITEM),
    "duplicate": ({"inter_rows": [(7, 1, "a", 1), (7, 3, "b", 2), (7, 1, "a", 1), (8, 2, "a", 1), (8, 4, "b", 2)]}, "interactions.csv", 2, RULE_DUPLICATE),
    "empty title": ({"items_rows": [(1, "a", "A1", "Lemon tea"), (2, "a", "A2", " "), (3, "b", "B1", "Kettle"), (4, "b", "B2", "Knife")]}, "items.csv", 1, RULE_TITLE),
    "non-utf8 title": ({"items_rows": [(1, "a", "A1", "Lemon tea"), (2, "a", "A2", "Oat"), (3, "b", "B1", "K\udcffettle"), (4, "b", "B2", "Knife")]}, "items.csv", 2, RULE_TITLE),
    "negative timestamp": ({"inter_rows": [(7, 1, "a", 1), (7, 3, "b", -2), (8, 2, "a", 1), (8, 4, "b", 2)]}, "interactions.csv", 1, RULE_TIMESTAMP),
    "non-numeric timestamp": ({"inter_rows": [(7, 1, "a", 1), (7, 3, "b", "noon"), (8, 2, "a", 1), (8, 4, "b", 2)]}, "interactions.csv", 1, RULE_TIMESTAMP),
    "empty domain": ({"inter_rows": [(7, 1, "a", 1), (7, 2, "a", 2), (8, 2, "a", 1), (8, 1, "a", 2)]}, "b", None, "domain 'b' is empty (no valid interactions after id mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_error_mode(ray_local, tmp_path, case):
    kwargs, file, row, rule = BAD_CASES[case]
    root = _write_tabular(tmp_path / "raw", **kwargs)
    cfg, run = _cfg(tmp_path, "data.source=tabular", f"data.path={root}")
    with pytest.raises(DataValidationError) as err:
        run_prepare(prepare_config(cfg), run)
    assert file in err.value.file and err.value.row == row and rule in err.value.rule, str(err.value)
    assert not run.is_done("prepare")


def test_domain_emptied_by_k_core(ray_local, tmp_path):
    """Domain b has one interaction per item: the 2-core filter empties it, and prepare says so
    right after the filter, before the per-user pass writes any sequence."""
    inter = [(7, 1, "a", 1), (7, 2, "a", 2), (8, 1, "a", 1), (8, 2, "a", 2), (7, 3, "b", 3), (8, 4, "b", 3)]
    root = _write_tabular(tmp_path / "raw", inter_rows=inter)
    cfg, run = _cfg(tmp_path, "data.source=tabular", f"data.path={root}", "data.k_core=2")
    with pytest.raises(DataValidationError) as err:
        run_prepare(prepare_config(cfg), run)
    assert "b" in err.value.file and "domain 'b' is empty (no valid interactions after the 2-core filter)" in err.value.rule
    assert not run.is_done("prepare") and not run.exists("sequences")


def test_bad_input_reject_mode(ray_local, tmp_path):
    """All row rules at once: bad rows land in rejected/ with file, row and rule; the rest is prepared."""
    items = [(1, "a", "A1", "Lemon tea"), (2, "a", "A2", " "), (3, "b", "B1", "K\udcffettle"), (4, "b", "B2", "Knife"), (5, "b", "B3", "Pan"), (6, "a", "A3", "Jam")]
    inter = [
        (7, 1, "a", 1), (7, 4, "b", 2), (7, 99, "a", 3), (7, 1, "a", 1), (7, 5, "b", -4), (7, 6, "a", "noon"),
        (8, 6, "a", 1), (8, 5, "b", 2), (8, 1, "a", 3), (8, 4, "b", 4), (8, 2, "a", 5),
    ]
    root = _write_tabular(tmp_path / "raw", items, inter)
    cfg, run = _cfg(tmp_path, "data.source=tabular", f"data.path={root}", "data.on_bad_rows=reject")
    stats = run_prepare(prepare_config(cfg), run)
    rej = run.read_table("rejected").to_pylist()
    got = sorted((r["file"].rsplit("/", 1)[1], r["row"], r["rule"]) for r in rej)
    assert got == [
        ("interactions.csv", 2, RULE_UNKNOWN_ITEM),
        ("interactions.csv", 3, RULE_DUPLICATE),
        ("interactions.csv", 4, RULE_TIMESTAMP),
        ("interactions.csv", 5, RULE_TIMESTAMP),
        ("interactions.csv", 10, RULE_UNKNOWN_ITEM),  # item 2 was rejected (empty title)
        ("items.csv", 1, RULE_TITLE),
        ("items.csv", 2, RULE_TITLE),
    ]
    assert stats["rejected"]["total"] == 7 and stats["rejected"]["by_rule"][RULE_TITLE] == 2
    assert stats["n_items"] == 4 and stats["n_interactions"] == 11 - 5
    assert run.read_table("items")["raw_id"].to_pylist() == ["A1", "A3", "B2", "B3"]


def test_k_core(ray_local, tmp_path):
    # user 9 has 2 interactions and item 5 is seen once: a 3-core drops both, then item 6 (left with 2)
    inter = [(7, 1, "a", 1), (7, 3, "b", 2), (7, 6, "a", 3), (7, 4, "b", 4), (8, 1, "a", 1), (8, 3, "b", 2), (8, 4, "b", 3), (8, 6, "a", 4),
             (10, 1, "a", 1), (10, 3, "b", 2), (10, 4, "b", 3), (9, 5, "b", 1), (9, 6, "a", 2)]
    items = [(1, "a", "A1", "Tea"), (3, "b", "B1", "Kettle"), (4, "b", "B2", "Knife"), (5, "b", "B3", "Pan"), (6, "a", "A3", "Jam")]
    root = _write_tabular(tmp_path / "raw", items, inter)
    cfg, run = _cfg(tmp_path, "data.source=tabular", f"data.path={root}", "data.k_core=3")
    stats = run_prepare(prepare_config(cfg), run)
    assert stats["k_core"]["interactions_removed"] == 4 and stats["n_items"] == 3
    assert run.read_table("items")["raw_id"].to_pylist() == ["A1", "B1", "B2"]
    inter_out = run.read_table("interactions")
    assert sorted(set(inter_out["user_id"].to_pylist())) == [7, 8, 10] and pc.max(inter_out["item_id"]).as_py() == 2
    assert pq.read_metadata(run.path("items", "part-00000.parquet")).num_rows == 3


def _assert_matches_single_process(run, seqs, max_history):
    """The Ray partitioned pass gives exactly the examples of one in-process pass."""
    from semacdr_dist.data.sequences import DOM_COL, ROW_COL, SRC_COL, build_examples

    inter = run.read_table("interactions")
    dom = pa.array(np.where(np.array(inter["domain"].to_pylist()) == "food", 0, 1).astype(np.int8))
    table = inter.append_column(DOM_COL, dom).append_column(SRC_COL, pa.array(np.zeros(inter.num_rows, np.int32)))
    table = table.append_column(ROW_COL, pa.array(np.arange(inter.num_rows)))
    ref = build_examples(table, ["food", "kitchen"], max_history=max_history)

    def key(t):
        return sorted(zip(t["user_id"].to_pylist(), [tuple(h) for h in t["history"].to_pylist()], t["target"].to_pylist(), strict=True))

    for split in ("train", "valid", "test"):
        assert key(seqs[split]) == key(ref.filter(pc.equal(ref["split"], split)))
