"""Each reader on small files written here (gzip and plain), and LLMCDSR on the real Food-Kitchen."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semacdr_dist.data.config import AmazonDomainConfig
from semacdr_dist.data.readers.amazon import read_amazon
from semacdr_dist.data.readers.base import RULE_TIMESTAMP, RULE_TITLE, collect
from semacdr_dist.data.readers.llmcdsr import iter_llmcdsr, read_llmcdsr
from semacdr_dist.data.readers.tabular import iter_tabular, read_tabular
from semacdr_dist.data.schemas import INTERACTIONS, ITEMS, SEQUENCES, DataValidationError


def write_llmcdsr(root, items_extra: str = "", train_a: str = "1\t0,1,2\n2\t1,2\n"):
    root.mkdir(exist_ok=True)
    (root / "items.tsv").write_text(
        "item\tdomain\tasin\ttitle\n0\tfood\tA0\tOat Crackers\n1\tfood\tA1\tLemon Tea\n2\tfood\tA2\tChili Sauce\n"
        "3\tkitchen\tB0\tTea Kettle\n4\tkitchen\tB1\tChef Knife\n" + items_extra
    )
    (root / "num.txt").write_text("3\n2\n")
    (root / "train_A.txt").write_text(train_a)
    (root / "train_B.txt").write_text("1\t3,4,3\n")
    (root / "train_overlap.txt").write_text("1\t0,3,1,4\n")
    (root / "valid.txt").write_text("1\t0,3,1\n")
    (root / "test.txt").write_text("1\t0,3,1,4\n2\t2,0\n")
    return root


def test_llmcdsr_small(tmp_path):
    out = read_llmcdsr(str(write_llmcdsr(tmp_path / "fk")))
    assert out.items.schema.equals(ITEMS) and out.items.num_rows == 5
    assert out.interactions.schema.equals(INTERACTIONS)
    # users numbered per file become distinct: 2 (A) + 1 (B) + 1 (overlap) train users
    assert sorted(set(out.interactions.column("user_id").to_pylist())) == [0, 1, 2, 3]
    rows = out.interactions.filter(pa.compute.equal(out.interactions["user_id"], 3)).to_pylist()
    assert [(r["item_id"], r["timestamp"], r["domain"]) for r in rows] == [(0, 0, "food"), (3, 1, "kitchen"), (1, 2, "food"), (4, 3, "kitchen")]
    test = out.sequences["test"].to_pylist()
    assert [(t["history"], t["target"], t["target_domain"], t["history_domain"]) for t in test] == [
        ([0, 3, 1], 4, "kitchen", [0, 1, 0]),
        ([2], 0, "food", [0]),
    ]
    assert out.sequences["valid"].schema.equals(SEQUENCES)
    all_users = set(out.interactions["user_id"].to_pylist()) | set(out.sequences["valid"]["user_id"].to_pylist()) | set(out.sequences["test"]["user_id"].to_pylist())
    assert len(all_users) == 4 + 1 + 2


def test_llmcdsr_bad_rows_name_file_and_row(tmp_path):
    root = write_llmcdsr(tmp_path / "fk", items_extra="5\tfood\tA9\t\xa0 \n", train_a="1\t0,1,2\n2\t1,x\n")
    with pytest.raises(DataValidationError) as err:
        read_llmcdsr(str(root))
    assert err.value.file.endswith("items.tsv") and err.value.row == 5 and err.value.rule == RULE_TITLE
    out = collect(iter_llmcdsr(str(root)), strict=False)
    rej = out.rejected.to_pylist()
    assert [(r["file"].rsplit("/", 1)[1], r["row"]) for r in rej] == [("items.tsv", 5), ("train_A.txt", 1)]
    # non-UTF-8 bytes in a title are the same rule
    (root / "items.tsv").write_bytes((root / "items.tsv").read_bytes().replace(b"Lemon", b"L\xffmon"))
    with pytest.raises(DataValidationError, match="title"):
        read_llmcdsr(str(root))


def test_food_kitchen_reproduced_exactly(food_kitchen_dir):
    out = read_llmcdsr(str(food_kitchen_dir))
    assert out.items.num_rows == 36_298
    counts = dict(zip(*np.unique(out.items["domain"].to_numpy(zero_copy_only=False), return_counts=True), strict=True))
    assert counts == {"food": 8_661, "kitchen": 27_637}
    assert out.items["item_id"].to_pylist() == list(range(36_298))
    for split, fname, n in (("valid", "valid.txt", 960), ("test", "test.txt", 937)):
        seq = out.sequences[split]
        assert seq.num_rows == n
        lines = (food_kitchen_dir / fname).read_text().splitlines()
        expected = [[int(x) for x in line.split("\t")[1].split(",")] for line in lines]
        got = [h + [t] for h, t in zip(seq["history"].to_pylist(), seq["target"].to_pylist(), strict=True)]
        assert got == expected
        doms = np.where(seq["target"].to_numpy() < 8_661, "food", "kitchen")
        assert seq["target_domain"].to_pylist() == doms.tolist()
    n_lines = sum(len((food_kitchen_dir / f).read_text().splitlines()) for f in ("train_A.txt", "train_B.txt", "train_overlap.txt"))
    assert len(set(out.interactions["user_id"].to_pylist())) == n_lines


def _write_jsonl(path, records, gz: bool):
    data = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("layout,gz", [("2018", True), ("2023", False)])
def test_amazon_layouts(tmp_path, layout, gz):
    ext = ".jsonl.gz" if gz else ".jsonl"
    if layout == "2018":
        meta = lambda a, t: {"asin": a, "title": t, "category": ["Grocery", "Tea"], "brand": "Acme", "description": ["Nice", "tea"]}  # noqa: E731
        rev = lambda u, a, ts: {"reviewerID": u, "asin": a, "unixReviewTime": ts, "overall": 5.0}  # noqa: E731
    else:
        meta = lambda a, t: {"parent_asin": a, "title": t, "categories": ["Grocery", "Tea"], "store": "Acme", "description": ["Nice tea"], "details": {}}  # noqa: E731
        rev = lambda u, a, ts: {"user_id": u, "parent_asin": a, "timestamp": ts * 1000, "rating": 5}  # noqa: E731
    doms = []
    for name, asins in (("food", ["F1", "F2"]), ("kitchen", ["K1", "K2", "K3"])):
        m = _write_jsonl(tmp_path / f"meta_{name}{ext}", [meta(a, f"{name} item {a}") for a in asins], gz)
        r = _write_jsonl(tmp_path / f"{name}{ext}", [rev("u1", asins[0], 100), rev("u2", asins[1], 50), rev("u1", asins[-1], 300)], gz)
        doms.append(AmazonDomainConfig(name=name, reviews=r, metadata=m))
    out = read_amazon(doms, layout)
    assert out.items["raw_id"].to_pylist() == ["F1", "F2", "K1", "K2", "K3"]
    assert out.items["item_id"].to_pylist() == [0, 1, 2, 3, 4]
    assert out.items["brand"].to_pylist()[0] == "Acme" and out.items["categories"][0].as_py() == ["Grocery", "Tea"]
    inter = out.interactions.to_pylist()
    assert len(inter) == 6
    u1 = [r for r in inter if r["user_id"] == 0]  # one user across both domains
    assert [(r["item_id"], r["domain"]) for r in u1] == [(0, "food"), (1, "food"), (2, "kitchen"), (4, "kitchen")]
    scale = 1 if layout == "2018" else 1000
    assert inter[0]["timestamp"] == 100 * scale


def test_amazon_bad_rows(tmp_path):
    m = _write_jsonl(tmp_path / "meta.jsonl", [{"asin": "A", "title": "Tea"}, "{not json", {"asin": "B", "title": ""}, {"title": "no id"}], False)
    r = _write_jsonl(tmp_path / "rev.jsonl.gz", [{"reviewerID": "u", "asin": "A", "unixReviewTime": 1}, {"reviewerID": "u", "asin": "A", "unixReviewTime": "soon"}, {"reviewerID": "u", "asin": "A", "unixReviewTime": -5}, {"asin": "A", "unixReviewTime": 3}], True)
    from semacdr_dist.data.readers.amazon import iter_amazon

    out = collect(iter_amazon([AmazonDomainConfig("food", r, m)], "2018"), strict=False)
    got = sorted((x["file"].rsplit("/", 1)[1], x["row"], x["rule"]) for x in out.rejected.to_pylist())
    assert got == [
        ("meta.jsonl", 2, "line must be a JSON object (UTF-8)"),  # 1-based line numbers
        ("meta.jsonl", 3, RULE_TITLE),
        ("meta.jsonl", 4, "missing field 'asin'"),
        ("rev.jsonl.gz", 2, RULE_TIMESTAMP),
        ("rev.jsonl.gz", 3, RULE_TIMESTAMP),
        ("rev.jsonl.gz", 4, "missing field 'reviewerID'"),
    ]
    assert out.items.num_rows == 1 and out.interactions.num_rows == 1
    with pytest.raises(DataValidationError, match="row 2"):
        read_amazon([AmazonDomainConfig("food", r, m)], "2018")


def _tabular_tables():
    items = pa.table({"item_id": [10, 20, 30], "domain": ["a", "a", "b"], "raw_id": ["x", "y", "z"], "title": ["T1", "T2", "T3"], "categories": [["c"], [], ["d", "e"]], "brand": ["b", None, "b"], "description": ["", "", ""]})
    inter = pa.table({"user_id": [1, 1, 2], "item_id": [10, 30, 20], "domain": ["a", "b", "a"], "timestamp": [5, 6, 7]})
    return items, inter


def test_tabular_parquet_and_csv(tmp_path):
    items, inter = _tabular_tables()
    pq.write_table(items, tmp_path / "items.parquet")
    pq.write_table(inter, tmp_path / "interactions.parquet")
    out = read_tabular(str(tmp_path / "items.parquet"), str(tmp_path / "interactions.parquet"))
    assert out.items.to_pylist() == items.cast(ITEMS).to_pylist()
    assert out.interactions.equals(inter.cast(INTERACTIONS))
    (tmp_path / "items.csv").write_text("item_id,domain,raw_id,title,categories,brand,description\n10,a,x,T1,c,b,\n20,a,y,T2,,,\n30,b,z,T3,d|e,b,\n")
    (tmp_path / "interactions.csv").write_text("user_id,item_id,domain,timestamp\n1,10,a,5\n1,30,b,6\n2,20,a,7\n")
    out = read_tabular(str(tmp_path / "items.csv"), str(tmp_path / "interactions.csv"))
    assert out.items["categories"].to_pylist() == [["c"], [], ["d", "e"]]
    assert out.interactions.equals(inter.cast(INTERACTIONS))


def test_tabular_bad_values_name_rows(tmp_path):
    (tmp_path / "items.csv").write_bytes(b"item_id,domain,raw_id,title,categories,brand,description\n10,a,x,T1,,,\n20,a,y,T\xff2,,,\nq,a,z,T3,,,\n")
    (tmp_path / "interactions.csv").write_text("user_id,item_id,domain,timestamp\n1,10,a,5\n1,10,a,later\n2,20,a,-1\n")
    out = collect(iter_tabular(str(tmp_path / "items.csv"), str(tmp_path / "interactions.csv")), strict=False)
    got = sorted((x["file"].rsplit("/", 1)[1], x["row"], x["rule"]) for x in out.rejected.to_pylist())
    assert got == [
        ("interactions.csv", 1, RULE_TIMESTAMP),
        ("interactions.csv", 2, RULE_TIMESTAMP),
        ("items.csv", 1, RULE_TITLE),
        ("items.csv", 2, "item_id must be an integer"),
    ]
    (tmp_path / "bad.csv").write_text("user_id,item_id,timestamp\n1,10,5\n")
    (tmp_path / "good_items.csv").write_text("item_id,domain,raw_id,title,categories,brand,description\n10,a,x,T1,,,\n")
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['domain'\]"):
        read_tabular(str(tmp_path / "good_items.csv"), str(tmp_path / "bad.csv"))
