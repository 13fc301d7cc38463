"""Reader of the LLMCDSR text release (e.g. Food-Kitchen; format in the data's README).

``items.tsv`` (header ``item domain asin title``), ``train_A.txt`` /
``train_B.txt`` / ``train_overlap.txt`` (``user<TAB>i1,i2,...`` in time order)
and ``valid.txt`` / ``test.txt`` (same format; the last item is the target).
There are no timestamps: the position in a line is the time. Users are
numbered per file, so global user ids are a running count over the files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from semacdr_dist.data.readers.base import (
    ROW_COL,
    Chunk,
    ReaderOutput,
    check_items,
    collect,
    decode_text,
    interactions_table,
    items_table,
    rejected_rows,
)
from semacdr_dist.data.schemas import SEQUENCES, DataValidationError

TRAIN_FILES = ("train_A.txt", "train_B.txt", "train_overlap.txt")
EVAL_FILES = {"valid": "valid.txt", "test": "test.txt"}
RULE_SEQ = "line must be `user<TAB>item,item,...` with integer item ids"


def _lines(fs: pafs.FileSystem, path: str) -> Iterator[bytes]:
    with fs.open_input_stream(path) as f:
        data = f.read()
    yield from data.splitlines()


def _parse_seq(line: bytes) -> list[int] | None:
    parts = line.split(b"\t")
    if len(parts) != 2 or not parts[1].strip():
        return None
    try:
        return [int(x) for x in parts[1].strip().split(b",")]
    except ValueError:
        return None


def iter_llmcdsr(path: str, chunk_rows: int = 250_000) -> Iterator[Chunk]:
    """Chunks of items, train interactions and the shipped valid/test sequences."""
    fs, root = pafs.FileSystem.from_uri(path if "://" in path else os.path.abspath(path))
    items_file = f"{root}/items.tsv"
    if fs.get_file_info(items_file).type == pafs.FileType.NotFound:
        raise DataValidationError(items_file, None, "file not found (LLMCDSR layout needs items.tsv)")

    cols: dict[str, list] = {k: [] for k in ("item_id", "domain", "raw_id", "title", "categories", "brand", "description", ROW_COL)}
    bad_rows, bad_recs = [], []
    lines = _lines(fs, items_file)
    header = next(lines, b"").decode("utf-8", "replace").split("\t")
    if header[:4] != ["item", "domain", "asin", "title"]:
        raise DataValidationError(items_file, None, "header must be `item domain asin title`", f"got {header}")
    for row, line in enumerate(lines):
        parts = line.split(b"\t", 3)
        if len(parts) < 3 or not parts[0].strip().isdigit():
            bad_rows.append(row)
            bad_recs.append({"line": line.decode("utf-8", "replace")})
            continue
        cols["item_id"].append(int(parts[0]))
        cols["domain"].append(parts[1].decode("utf-8", "replace"))
        cols["raw_id"].append(parts[2].decode("utf-8", "replace"))
        cols["title"].append(decode_text(parts[3]) if len(parts) > 3 else "")
        cols["categories"].append([])
        cols["brand"].append("")
        cols["description"].append("")
        cols[ROW_COL].append(row)
    items = items_table(cols)
    good, rej = check_items(items, items_file)
    if bad_rows:
        layout = rejected_rows(items_file, bad_rows, ["line must be `item<TAB>domain<TAB>asin<TAB>title`"] * len(bad_rows), bad_recs)
        rej = layout if rej is None else pa.concat_tables([layout, rej])
    yield Chunk("items", items_file, good, rej)

    domains: list[str] = list(dict.fromkeys(items.column("domain").to_pylist()))
    dom_index = {d: i for i, d in enumerate(domains)}
    ids = items.column("item_id").to_numpy()
    dom_of = np.full(int(ids.max()) + 1 if len(ids) else 0, -1, dtype=np.int64)
    dom_of[ids] = [dom_index[d] for d in items.column("domain").to_pylist()]
    names = np.array(domains + ["?"], dtype=object)

    next_user = 0
    for fname in TRAIN_FILES:
        file = f"{root}/{fname}"
        if fs.get_file_info(file).type == pafs.FileType.NotFound:
            raise DataValidationError(file, None, "file not found (LLMCDSR layout)")
        buf = {"user_id": [], "item_id": [], "timestamp": [], ROW_COL: []}
        bad, bad_recs = [], []

        def flush(buf=buf, file=file, bad=bad, bad_recs=bad_recs):
            it = np.asarray(buf["item_id"], dtype=np.int64)
            known = (it >= 0) & (it < len(dom_of))
            dom = np.where(known, dom_of[np.where(known, it, 0)], -1)
            table = interactions_table({**buf, "domain": names[dom].tolist()})
            rej = rejected_rows(file, bad, [RULE_SEQ] * len(bad), bad_recs) if bad else None
            for v in buf.values():
                v.clear()
            bad.clear()
            bad_recs.clear()
            return Chunk("interactions", file, table, rej)

        for row, line in enumerate(_lines(fs, file)):
            seq = _parse_seq(line)
            if seq is None:
                bad.append(row)
                bad_recs.append({"line": line.decode("utf-8", "replace")[:500]})
                continue
            n = len(seq)
            buf["user_id"].extend([next_user] * n)
            buf["item_id"].extend(seq)
            buf["timestamp"].extend(range(n))
            buf[ROW_COL].extend([row] * n)
            next_user += 1
            if len(buf["item_id"]) >= chunk_rows:
                yield flush()
        yield flush()

    for split, fname in EVAL_FILES.items():
        file = f"{root}/{fname}"
        if fs.get_file_info(file).type == pafs.FileType.NotFound:
            raise DataValidationError(file, None, "file not found (LLMCDSR layout)")
        rows: dict[str, list] = {f.name: [] for f in SEQUENCES}
        bad, bad_recs = [], []
        for row, line in enumerate(_lines(fs, file)):
            seq = _parse_seq(line)
            if seq is None or len(seq) < 2 or max(seq) >= len(dom_of) or min(seq) < 0 or (dom_of[seq] < 0).any():
                bad.append(row)
                bad_recs.append({"line": line.decode("utf-8", "replace")[:500]})
                continue
            hist, target = seq[:-1], seq[-1]
            rows["user_id"].append(next_user)
            rows["split"].append(split)
            rows["target_domain"].append(domains[dom_of[target]])
            rows["history"].append(hist)
            rows["history_domain"].append(dom_of[hist].astype(np.int8))
            rows["target"].append(target)
            next_user += 1
        rej = (
            rejected_rows(file, bad, [RULE_SEQ + " (>= 2 known items)"] * len(bad), bad_recs) if bad else None
        )
        yield Chunk("sequences", file, pa.table(rows, schema=SEQUENCES), rej)


def read_llmcdsr(path: str) -> ReaderOutput:
    """Items, train interactions and valid/test sequences; stops at the first bad row."""
    return collect(iter_llmcdsr(path))
