"""The driver side of prepare: streaming a reader into staged shards, the item
ids and their dense numbering, where bad rows go, and splits that ship with the data.

Driver memory is bounded by one reader chunk plus 17 bytes per item (reader id,
domain, shard); item text never stays in the driver.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from semacdr_dist.data.config import DataConfig
from semacdr_dist.data.readers.base import (
    ROW_COL,
    RULE_DUPLICATE_ITEM,
    RULE_UNKNOWN_ITEM,
    Chunk,
    check_items,
    check_timestamps,
    rejected_rows,
)
from semacdr_dist.data.schemas import (
    INTERACTIONS,
    ITEMS,
    REJECTED,
    SEQUENCES,
    SPLITS,
    DataValidationError,
    validate_table,
)
from semacdr_dist.data.sequences import DOM_COL, SRC_COL, quantiles_from_hist
from semacdr_dist.rundir import RunDir

log = logging.getLogger(__name__)

PART_COL = "_part"  # user hash partition
BAD_COL = "_bad"  # rule broken by an interaction row (null = fine)


# ----------------------------------------------------------------------------- sources
def open_source(data: DataConfig, seed: int) -> tuple[list[str], Iterator[Chunk]]:
    """(declared domain order, reader chunks) of the configured source."""
    if data.source == "synthetic":
        from semacdr_dist.data.synthetic import iter_synthetic, layout

        syn_seed = seed if data.synthetic.seed is None else data.synthetic.seed
        return layout(data.synthetic).domains, iter_synthetic(data.synthetic, syn_seed)
    if data.source == "llmcdsr":
        from semacdr_dist.data.readers.llmcdsr import iter_llmcdsr

        if not data.path:
            raise ValueError("data.source=llmcdsr needs data.path (the folder holding items.tsv)")
        return [], iter_llmcdsr(data.path, data.chunk_rows)
    if data.source in ("amazon2018", "amazon2023"):
        from semacdr_dist.data.readers.amazon import iter_amazon

        if not data.domains:
            raise ValueError(f"data.source={data.source} needs data.domains (name, reviews, metadata)")
        return [d.name for d in data.domains], iter_amazon(data.domains, data.source[-4:], data.chunk_rows)
    if data.source == "tabular":
        from semacdr_dist.data.readers.tabular import iter_tabular, tabular_paths

        items_path, inter_path = tabular_paths(data)
        return [], iter_tabular(items_path, inter_path, data.chunk_rows)
    raise ValueError(f"unknown data.source {data.source!r}: synthetic | llmcdsr | amazon2018 | amazon2023 | tabular")


# ----------------------------------------------------------------------------- rejects
@dataclass
class Rejects:
    """Where bad rows go: an error (mode=error) or `rejected/` shards (mode=reject)."""

    run: RunDir
    mode: str
    by_rule: dict[str, int] = field(default_factory=dict)
    shards: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("error", "reject"):
            raise ValueError(f"data.on_bad_rows must be 'error' or 'reject', got {self.mode!r}")

    def add(self, table: pa.Table | None, name: str = "reader") -> None:
        if table is None or table.num_rows == 0:
            return
        if self.mode == "error":
            first = table.slice(0, 1).to_pylist()[0]
            raise DataValidationError(first["file"], first["row"], first["rule"], (first["record"] or "")[:300])
        self.run.write_table(f"rejected/{name}-{self.shards:05d}.parquet", table.cast(REJECTED))
        self.shards += 1
        for rule, n in zip(*np.unique(table.column("rule").to_numpy(zero_copy_only=False), return_counts=True), strict=True):
            self.by_rule[str(rule)] = self.by_rule.get(str(rule), 0) + int(n)

    @property
    def total(self) -> int:
        return sum(self.by_rule.values())


# ----------------------------------------------------------------------------- staging
ITEM_FILE_COL = "_file"  # index of the items file a staged item row came from


@dataclass
class StagedItems:
    """What the driver keeps of the items: ids and domains only (17 bytes per item).

    The item rows themselves (titles, descriptions) stay in `_staging/items/` shards;
    :func:`write_items` renumbers and writes them with Ray tasks.
    """

    raw_ids: np.ndarray  # int64 reader ids of the kept items (first occurrence of each id)
    domain: np.ndarray  # int8 index into Staged.domains of each kept item
    shards: list[str]  # `_staging/items/` shard names, in stream order
    dropped: dict[int, np.ndarray] = field(default_factory=dict)  # shard -> row positions of repeated ids

    @property
    def n(self) -> int:
        return len(self.raw_ids)


@dataclass
class Staged:
    domains: list[str]
    items: StagedItems
    files: list[str]  # interaction source files (index = `_src`)
    n_interactions: int
    shipped: dict[str, list[pa.Table]]  # split -> SEQUENCES with reader ids (data with its own split)
    shipped_files: dict[str, str]


@dataclass
class _ItemLog:
    """Per staged item row, in stream order: reader id, domain code, shard, position."""

    names: dict[str, int] = field(default_factory=dict)  # domain name -> code (order of first appearance)
    ids: list[np.ndarray] = field(default_factory=list)
    codes: list[np.ndarray] = field(default_factory=list)
    shard: list[np.ndarray] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)

    def add(self, run: RunDir, table: pa.Table, file: str) -> None:
        if file not in self.files:
            self.files.append(file)
        k = len(self.shards)
        name = f"part-{k:05d}.parquet"
        table = table.append_column(ITEM_FILE_COL, pa.array(np.full(table.num_rows, self.files.index(file), np.int32)))
        run.write_table(f"_staging/items/{name}", table)
        self.shards.append(name)
        enc = pc.dictionary_encode(table.column("domain").combine_chunks())
        code_of = np.array([self.names.setdefault(d, len(self.names)) for d in enc.dictionary.to_pylist()] or [0], np.int32)
        self.ids.append(table.column("item_id").to_numpy())
        self.codes.append(code_of[enc.indices.to_numpy(zero_copy_only=False)].astype(np.int32))
        self.shard.append(np.full(table.num_rows, k, np.int32))


def stage(data: DataConfig, seed: int, run: RunDir, rejects: Rejects) -> Staged:
    """Stream the reader's chunks into `_staging/{items,interactions}/` shards; keep item ids and shipped splits."""
    declared, chunks = open_source(data, seed)
    log_ = _ItemLog()
    files: list[str] = []
    shipped: dict[str, list[pa.Table]] = {}
    shipped_files: dict[str, str] = {}
    n_inter = n_shards = 0
    for ch in chunks:
        rejects.add(ch.rejected)
        if ch.kind == "items":
            require_columns(ch.table, ITEMS, ch.file)
            good, rej = check_items(ch.table, ch.file)
            rejects.add(rej)
            good = validate_table(good, ITEMS, ch.file).append_column(ROW_COL, good.column(ROW_COL))
            if good.num_rows:
                log_.add(run, good, ch.file)
        elif ch.kind == "interactions":
            if ch.table.num_rows == 0:
                continue
            require_columns(ch.table, INTERACTIONS, ch.file)
            if ch.file not in files:
                files.append(ch.file)
            good, rej = check_timestamps(ch.table, ch.file)
            rejects.add(rej)
            good = validate_table(good, INTERACTIONS, ch.file).append_column(ROW_COL, good.column(ROW_COL))
            good = good.append_column(SRC_COL, pa.array(np.full(good.num_rows, files.index(ch.file), np.int32)))
            run.write_table(f"_staging/interactions/part-{n_shards:05d}.parquet", good)
            n_shards += 1
            n_inter += good.num_rows
        elif ch.kind == "sequences":
            table = validate_table(ch.table, SEQUENCES, ch.file)
            for split in SPLITS:
                part = table.filter(pc.equal(table.column("split"), split))
                if part.num_rows:
                    shipped.setdefault(split, []).append(part)
                    shipped_files[split] = ch.file
        else:
            raise ValueError(f"reader yielded an unknown chunk kind {ch.kind!r}")
        # Arrow's allocator keeps freed chunks mapped; without this the driver's RSS grew by
        # ~0.2 GB per million items over a 10M-item stage (measured: 3.0 GB, benchmarks/scale.py).
        pa.default_memory_pool().release_unused()
    domains, items = _unique_items(log_, declared, run, rejects)
    for d in declared:
        if not (items.domain == domains.index(d)).any():
            raise DataValidationError(domain_file(data, d, "metadata"), None, f"domain '{d}' is empty (no valid items)")
    if n_inter == 0:
        raise DataValidationError(data.path or data.source, None, "no valid interactions")
    return Staged(domains, items, files, n_inter, shipped, shipped_files)


def require_columns(table: pa.Table, schema: pa.Schema, file: str) -> None:
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise DataValidationError(file, None, f"missing column(s) {missing}", f"has {table.column_names}")


def _unique_items(log_: _ItemLog, declared: list[str], run: RunDir, rejects: Rejects) -> tuple[list[str], StagedItems]:
    """(domains, the first occurrence of each item id); repeats are bad rows (read back from their shards)."""
    cat = (lambda xs, t: np.concatenate(xs) if xs else np.zeros(0, t))  # noqa: E731
    ids, codes, shard = cat(log_.ids, np.int64), cat(log_.codes, np.int32), cat(log_.shard, np.int32)
    log_.ids, log_.codes, log_.shard = [], [], []
    _, first = np.unique(ids, return_index=True)  # index of the first occurrence in stream order
    keep = np.zeros(len(ids), dtype=bool)
    keep[first] = True
    dropped: dict[int, np.ndarray] = {}
    if not keep.all():
        starts = np.concatenate([[0], np.flatnonzero(np.diff(shard)) + 1]) if len(shard) else np.zeros(0, np.int64)
        offset = dict(zip(shard[starts].tolist(), starts.tolist(), strict=True))
        bad_by_file: dict[int, list[pa.Table]] = {}
        for k in np.unique(shard[~keep]):
            pos = np.flatnonzero(~keep & (shard == k)) - offset[int(k)]
            dropped[int(k)] = pos
            rows = run.read_table("_staging", "items", log_.shards[k]).take(pa.array(pos))
            for f in np.unique(rows.column(ITEM_FILE_COL).to_numpy()):
                bad_by_file.setdefault(int(f), []).append(rows.filter(pc.equal(rows.column(ITEM_FILE_COL), int(f))))
        for f in sorted(bad_by_file):
            bad = pa.concat_tables(bad_by_file[f])
            records = bad.select(["item_id", "domain", "raw_id", "title"]).to_pylist()
            rejects.add(rejected_rows(log_.files[f], bad.column(ROW_COL).to_numpy(), [RULE_DUPLICATE_ITEM] * bad.num_rows, records))
    # domain order: declared first, then by first appearance among the kept items
    kept_codes = codes[keep]
    seen_codes, first_pos = np.unique(kept_codes, return_index=True)
    names = {c: n for n, c in log_.names.items()}
    appearing = [names[int(c)] for c in seen_codes[np.argsort(first_pos)]]
    domains = list(dict.fromkeys(list(declared) + appearing))
    to_domain = np.zeros(max(len(names), 1), np.int8)
    for c, n in names.items():
        if n in domains:
            to_domain[c] = domains.index(n)
    return domains, StagedItems(ids[keep], to_domain[kept_codes], log_.shards, dropped)


def domain_file(data: DataConfig, domain: str, kind: str) -> str:
    for d in data.domains:
        if d.name == domain:
            return d.metadata if kind == "metadata" else d.reviews
    return f"{data.source}:{domain}"


# ----------------------------------------------------------------------------- dense ids
@dataclass
class ItemIndex:
    """Reader id → dense id (domain-major), and each dense id's domain index."""

    sorted_raw: np.ndarray
    dense_of_sorted: np.ndarray
    domain_of_dense: np.ndarray  # int8

    def lookup(self, raw: np.ndarray) -> np.ndarray:
        """Dense ids of reader ids; -1 where unknown."""
        if len(self.sorted_raw) == 0:
            return np.full(len(raw), -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.sorted_raw, raw), 0, len(self.sorted_raw) - 1)
        return np.where(self.sorted_raw[pos] == raw, self.dense_of_sorted[pos], -1)


def dense_index(items: StagedItems) -> ItemIndex:
    """Dense ids 0..N-1 by (domain order, reader id), as an index from reader ids."""
    raw, dom = items.raw_ids, items.domain.astype(np.int64)
    order = np.lexsort((raw, dom))
    by_raw = np.argsort(raw[order], kind="stable")
    return ItemIndex(raw[order][by_raw], by_raw.astype(np.int64), dom[order].astype(np.int8))


ITEM_PART_COL = "_ipart"  # items/part-P that a renumbered item row goes to


def dense_item_rows(table: pa.Table, index: ItemIndex, drop: np.ndarray | None, part_rows: int) -> pa.Table:
    """One staged items shard → ITEMS rows with dense ids (+ their output part), dropped rows removed.

    ``drop``: positions of repeated ids in this shard; items with no dense id (k-core) go too.
    """
    if drop is not None and len(drop):
        mask = np.ones(table.num_rows, dtype=bool)
        mask[drop] = False
        table = table.filter(pa.array(mask))
    dense = index.lookup(table.column("item_id").to_numpy())
    keep = dense >= 0
    table, dense = table.filter(pa.array(keep)), dense[keep]
    out = table.select(ITEMS.names).set_column(0, "item_id", pa.array(dense, pa.int64())).cast(ITEMS)
    return out.append_column(ITEM_PART_COL, pa.array(dense // part_rows, pa.int64()))


def resolve(value):
    """Ray Data passes ObjectRefs in fn_kwargs through unresolved; fetch once per worker."""
    import ray

    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


def map_ids(batch: pa.Table, index, domains: list[str], n_parts: int) -> pa.Table:
    """Dense item ids, domain from the item, user hash partition; unknown ids flagged."""
    index = resolve(index)
    dense = index.lookup(batch.column("item_id").to_numpy())
    known = dense >= 0
    dom = np.where(known, index.domain_of_dense[np.where(known, dense, 0)], 0).astype(np.int8)
    user = batch.column("user_id").to_numpy()
    domain = pa.DictionaryArray.from_arrays(pa.array(dom.astype(np.int32)), pa.array(domains, pa.string())).cast(pa.string())
    if not known.all():
        # An unknown item's row goes to rejected/: keep what its file said (its own item id and
        # domain), not the dense id -1 and domain 0 it would otherwise get.
        domain = pc.if_else(pa.array(known), domain, batch.column("domain").cast(pa.string()))
        dense = np.where(known, dense, batch.column("item_id").to_numpy())
    return pa.table(
        {
            "user_id": user,
            "item_id": dense,
            "domain": domain,
            DOM_COL: dom,
            "timestamp": batch.column("timestamp"),
            SRC_COL: batch.column(SRC_COL),
            ROW_COL: batch.column(ROW_COL),
            PART_COL: ((user.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)) % np.uint64(n_parts),
            BAD_COL: pa.nulls(len(dense), pa.string()) if known.all() else pc.if_else(pa.array(known), pa.nulls(len(dense), pa.string()), RULE_UNKNOWN_ITEM),
        }
    )


def shipped_split(table: pa.Table, index: ItemIndex, domains: list[str], max_history: int, file: str, rejects: Rejects) -> pa.Table:
    """A split that came with the data: reader ids → dense ids, history truncated."""
    hist = table.column("history").combine_chunks()
    offsets = hist.offsets.to_numpy()
    flat = index.lookup(hist.flatten().to_numpy())
    target = index.lookup(table.column("target").to_numpy())
    row = np.repeat(np.arange(table.num_rows), np.diff(offsets))
    unknown = (target < 0) | (np.bincount(row[flat < 0], minlength=table.num_rows) > 0)
    if unknown.any():
        bad = np.flatnonzero(unknown)
        rejects.add(rejected_rows(file, bad, [RULE_UNKNOWN_ITEM] * len(bad), table.take(pa.array(bad)).to_pylist()))
    keep = np.flatnonzero(~unknown)
    lens = np.diff(offsets)[keep]
    hlen = np.minimum(lens, max_history) if max_history > 0 else lens
    start = offsets[keep] + lens - hlen
    new_off = np.concatenate([[0], np.cumsum(hlen)])
    take = np.repeat(start - new_off[:-1], hlen) + np.arange(new_off[-1])
    names = np.array(domains, dtype=object)
    return pa.table(
        {
            "user_id": table.column("user_id").take(pa.array(keep)),
            "split": table.column("split").take(pa.array(keep)),
            "target_domain": pa.array(names[index.domain_of_dense[target[keep]]].tolist(), pa.string()),
            "history": pa.ListArray.from_arrays(pa.array(new_off, pa.int32()), pa.array(flat[take], pa.int64())),
            "history_domain": pa.ListArray.from_arrays(pa.array(new_off, pa.int32()), pa.array(index.domain_of_dense[flat[take]], pa.int8())),
            "target": pa.array(target[keep], pa.int64()),
        },
        schema=SEQUENCES,
    )


def build_stats(data: DataConfig, domains: list[str], item_domain: np.ndarray, t: dict, rejects: Rejects, kcore: dict, shipped: bool) -> dict:
    per_domain = np.bincount(item_domain.astype(np.int64), minlength=len(domains))
    test = t["test_per_domain"]
    cold = t["cold_test_per_domain"]
    return {
        "source": data.source,
        "domains": domains,
        "n_items": int(len(item_domain)),
        "items_per_domain": {d: int(n) for d, n in zip(domains, per_domain, strict=True)},
        "n_users": t["users"],
        "n_interactions": int(sum(t["interactions_per_domain"])),
        "interactions_per_domain": dict(zip(domains, t["interactions_per_domain"], strict=True)),
        "users_per_domain": dict(zip(domains, t["users_per_domain"], strict=True)),
        "overlapping_users": t["overlapping_users"],
        "history_length_quantiles": quantiles_from_hist(t["user_len_hist"]),
        "examples": t["examples"],
        "test_per_domain": dict(zip(domains, test, strict=True)),
        # share of test examples whose history holds <= 1 item of the target's domain
        "cold_start_share": {d: (c / n if n else 0.0) for d, n, c in zip(domains, test, cold, strict=True)},
        "cold_start_share_all": (sum(cold) / sum(test)) if sum(test) else 0.0,
        "split": "shipped" if shipped else "leave_one_out",
        "max_history": data.max_history,
        "k_core": kcore,
        "rejected": {"total": rejects.total, "by_rule": rejects.by_rule},
    }
