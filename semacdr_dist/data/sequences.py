"""Vectorised kernels of the prepare stage, shared by the Ray Data path and the
single-process baseline: duplicate detection and per-user example building.

Both take a table holding *all* interactions of some set of users (one hash
partition of users), so they are exact no matter how users are spread over
partitions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from semacdr_dist.data.readers.base import ROW_COL
from semacdr_dist.data.schemas import REJECTED, SEQUENCES

SRC_COL = "_src"  # index of the source file in the stage's file list
DOM_COL = "_dom"  # int8 domain index of the interaction's item
USER_SPLIT = "_user"  # internal split of the per-user summary rows
COUNTS_COL = "_dom_counts"  # per-user interactions per domain (summary rows only)

# SEQUENCES + the per-user summary column: one table type for both row kinds.
EXAMPLES = pa.schema(list(SEQUENCES) + [pa.field(COUNTS_COL, pa.list_(pa.int64()), nullable=False)])


def time_order(table: pa.Table) -> pa.Table:
    """Sort by user, time, then file and row (ties keep the file order)."""
    return table.sort_by([("user_id", "ascending"), ("timestamp", "ascending"), (SRC_COL, "ascending"), (ROW_COL, "ascending")])


def split_duplicates(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(first occurrences, repeats) of (user, item, timestamp) rows, both in time order."""
    if table.num_rows == 0:
        return table, table
    table = time_order(table)
    u = table.column("user_id").to_numpy()
    i = table.column("item_id").to_numpy()
    t = table.column("timestamp").to_numpy()
    # Equal (user, timestamp) rows are adjacent; sort them by item too, then compare neighbours.
    order = np.lexsort((table.column(ROW_COL).to_numpy(), table.column(SRC_COL).to_numpy(), i, t, u))
    dup_sorted = np.zeros(len(u), dtype=bool)
    dup_sorted[1:] = (u[order][1:] == u[order][:-1]) & (i[order][1:] == i[order][:-1]) & (t[order][1:] == t[order][:-1])
    dup = np.zeros(len(u), dtype=bool)
    dup[order] = dup_sorted
    return table.filter(pa.array(~dup)), table.filter(pa.array(dup))


def rejected_from(bad: pa.Table, files: list[str], rule: str | list[str]) -> pa.Table:
    """REJECTED rows for interaction rows carrying `_src` / `_row`."""
    src = bad.column(SRC_COL).to_numpy()
    rows = bad.column(ROW_COL).to_numpy()
    records = bad.select([c for c in ("user_id", "item_id", "domain", "timestamp") if c in bad.column_names])
    import json

    recs = [json.dumps(r, default=str) for r in records.to_pylist()]
    rules = [rule] * bad.num_rows if isinstance(rule, str) else list(rule)
    return pa.table({"file": [files[s] for s in src], "row": rows, "rule": rules, "record": recs}, schema=REJECTED)


def _list_array(offsets: np.ndarray, values: np.ndarray, value_type: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32() if offsets[-1] < 2**31 else pa.int64()), pa.array(values, value_type))


def build_examples(
    table: pa.Table,
    domains: list[str],
    *,
    max_history: int,
    train_examples: str = "all",
    train_last_n: int = 1,
    leave_one_out: bool = True,
) -> pa.Table:
    """EXAMPLES rows (train/valid/test examples + one `_user` summary row per user).

    `table` holds every interaction of its users (user_id, item_id dense, `_dom`,
    timestamp, `_src`, `_row`). With `leave_one_out`, a user's last interaction
    is the test target and the one before it the valid target (users with >= 3
    interactions; a user with 2 gives one train example); without it (data that
    ships its own split) every position >= 1 is a train target.
    """
    if table.num_rows == 0:
        return EXAMPLES.empty_table()
    table = time_order(table)
    user = table.column("user_id").to_numpy()
    item = table.column("item_id").to_numpy()
    dom = table.column(DOM_COL).to_numpy().astype(np.int8)
    n = len(user)
    brk = np.flatnonzero(user[1:] != user[:-1]) + 1
    starts = np.concatenate([[0], brk])
    lengths = np.diff(np.concatenate([starts, [n]]))
    n_users = len(starts)
    uidx = np.repeat(np.arange(n_users), lengths)
    local = np.arange(n) - starts[uidx]
    ulen = lengths[uidx]

    split = np.full(n, -1, dtype=np.int8)  # -1 none, 0 train, 1 valid, 2 test
    if leave_one_out:
        big = ulen >= 3
        split[big & (local == ulen - 1)] = 2
        split[big & (local == ulen - 2)] = 1
        train = (local >= 1) & ((big & (local <= ulen - 3)) | (ulen == 2))
    else:
        train = local >= 1
    if train_examples == "last_n":
        # position among the user's train targets, counted from the end
        # (train targets of a user are contiguous from local position 1)
        n_train = np.bincount(uidx, weights=train, minlength=n_users).astype(np.int64)
        train &= (n_train[uidx] - local + 1) <= train_last_n
    elif train_examples != "all":
        raise ValueError(f"data.train_examples must be 'all' or 'last_n', got {train_examples!r}")
    split[train] = 0

    pos = np.flatnonzero(split >= 0)
    # group examples by split so each split is contiguous (train, valid, test)
    pos = pos[np.argsort(split[pos], kind="stable")]
    lo = np.maximum(starts[uidx[pos]], pos - max_history) if max_history > 0 else starts[uidx[pos]]
    hlen = pos - lo
    offsets = np.concatenate([[0], np.cumsum(hlen)])
    flat = np.repeat(lo - offsets[:-1], hlen) + np.arange(offsets[-1])

    def decode(codes: np.ndarray, names: list[str]) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(names, pa.string())).cast(pa.string())

    examples = pa.table(
        {
            "user_id": pa.array(user[pos], pa.int64()),
            "split": decode(split[pos], ["train", "valid", "test"]),
            "target_domain": decode(dom[pos], domains),
            "history": _list_array(offsets, item[flat], pa.int64()),
            "history_domain": _list_array(offsets, dom[flat], pa.int8()),
            "target": pa.array(item[pos], pa.int64()),
            COUNTS_COL: _list_array(np.zeros(len(pos) + 1, dtype=np.int64), np.zeros(0, np.int64), pa.int64()),
        },
        schema=EXAMPLES,
    )
    n_dom = len(domains)
    counts = np.zeros((n_users, n_dom), dtype=np.int64)
    np.add.at(counts, (uidx, dom.astype(np.int64)), 1)
    summary = pa.table(
        {
            "user_id": pa.array(user[starts], pa.int64()),
            "split": pa.array([USER_SPLIT] * n_users, pa.string()),
            "target_domain": pa.array([""] * n_users, pa.string()),
            "history": _list_array(np.zeros(n_users + 1, dtype=np.int64), np.zeros(0, np.int64), pa.int64()),
            "history_domain": _list_array(np.zeros(n_users + 1, dtype=np.int64), np.zeros(0, np.int8), pa.int8()),
            "target": pa.array(np.full(n_users, -1), pa.int64()),
            COUNTS_COL: _list_array(np.arange(n_users + 1) * n_dom, counts.ravel(), pa.int64()),
        },
        schema=EXAMPLES,
    )
    return pa.concat_tables([examples, summary])


def partial_stats(batch: pa.Table, domains: list[str]) -> dict:
    """Additive statistics of a batch of EXAMPLES rows (reduced by :func:`merge_stats`)."""
    n_dom = len(domains)
    split = batch.column("split")
    out: dict = {"examples": {s: int(pc.sum(pc.equal(split, s)).as_py() or 0) for s in ("train", "valid", "test")}}
    users = batch.filter(pc.equal(split, USER_SPLIT))
    counts = (
        users.column(COUNTS_COL).combine_chunks().flatten().to_numpy().reshape(-1, n_dom)
        if users.num_rows
        else np.zeros((0, n_dom), np.int64)
    )
    out["users"] = int(counts.shape[0])
    out["interactions_per_domain"] = counts.sum(axis=0).tolist()
    out["users_per_domain"] = (counts > 0).sum(axis=0).tolist()
    out["overlapping_users"] = int(((counts > 0).sum(axis=1) >= 2).sum())
    vals, cnt = np.unique(counts.sum(axis=1), return_counts=True)
    out["user_len_hist"] = {int(v): int(c) for v, c in zip(vals, cnt, strict=True)}
    out["test_per_domain"] = [0] * n_dom
    out["cold_test_per_domain"] = [0] * n_dom
    test = batch.filter(pc.equal(split, "test"))
    if test.num_rows:
        index = {d: i for i, d in enumerate(domains)}
        td = np.array([index[d] for d in test.column("target_domain").to_pylist()], dtype=np.int64)
        hd = test.column("history_domain").combine_chunks()
        row = np.repeat(np.arange(test.num_rows), np.diff(hd.offsets.to_numpy()))
        same = hd.flatten().to_numpy().astype(np.int64) == td[row]
        n_target_in_hist = np.bincount(row[same], minlength=test.num_rows)
        out["test_per_domain"] = np.bincount(td, minlength=n_dom).tolist()
        out["cold_test_per_domain"] = np.bincount(td[n_target_in_hist <= 1], minlength=n_dom).tolist()
    return out


def merge_stats(parts: list[dict], n_domains: int) -> dict:
    """Sum :func:`partial_stats` results."""
    total: dict = {
        "examples": {"train": 0, "valid": 0, "test": 0},
        "users": 0,
        "interactions_per_domain": [0] * n_domains,
        "users_per_domain": [0] * n_domains,
        "overlapping_users": 0,
        "user_len_hist": {},
        "test_per_domain": [0] * n_domains,
        "cold_test_per_domain": [0] * n_domains,
    }
    for p in parts:
        for s, v in p["examples"].items():
            total["examples"][s] += v
        total["users"] += p["users"]
        total["overlapping_users"] += p["overlapping_users"]
        for k in ("interactions_per_domain", "users_per_domain", "test_per_domain", "cold_test_per_domain"):
            total[k] = [a + b for a, b in zip(total[k], p[k], strict=True)]
        for length, c in p["user_len_hist"].items():
            total["user_len_hist"][int(length)] = total["user_len_hist"].get(int(length), 0) + c
    return total


def quantiles_from_hist(hist: dict[int, int], qs: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)) -> dict[str, int]:
    """Exact (lower) quantiles of an integer distribution given as {value: count}."""
    if not hist:
        return {}
    vals = np.array(sorted(hist))
    cum = np.cumsum([hist[v] for v in vals])
    total = cum[-1]
    return {f"p{int(q * 100)}": int(vals[min(np.searchsorted(cum, max(q * total, 1)), len(vals) - 1)]) for q in qs}
