"""The prepare stage: raw data → `items/`, `interactions/`, `sequences/{train,valid,test}/`,
`rejected/` and `stats.json` in the run directory.

1. *Stage* (driver, :mod:`staging`): the reader's chunks stream through, are
   checked row by row and land as parquet shards under `_staging/`; the driver
   keeps only item ids and domains (17 B/item) and numbers items densely,
   domain-major in `domains` order.
2. *Map* (Ray Data over the staged shards): dense item ids, domain index, user
   hash partition; rows naming an unknown item are flagged.
3. *Optional k-core* (Ray Data aggregates).
4. *Items* (Ray Data over the staged item shards): renumbered and written as
   `items/part-P` (``data.chunk_rows`` consecutive dense ids each) by one
   ``groupby(part).map_groups`` pass.
5. *Per-user pass* (one ``groupby(partition).map_groups``): every partition
   holds all rows of its users; it drops repeated (user, item, timestamp) rows,
   builds train/valid/test examples with the vectorised kernels of
   :mod:`sequences` and writes its own `interactions/part-P` and
   `sequences/<split>/part-P` shards; it returns only statistics and bad rows.

Bad rows stop the stage with a :class:`DataValidationError` naming file, row and
rule, or (``data.on_bad_rows=reject``) go to `rejected/` and into the stats.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from semacdr_dist.data.config import DataConfig, PrepareStageConfig
from semacdr_dist.data.readers.base import ROW_COL, RULE_DUPLICATE
from semacdr_dist.data.schemas import (
    INTERACTIONS,
    ITEMS,
    REJECTED,
    SEQUENCES,
    SPLITS,
    DataValidationError,
)
from semacdr_dist.data.sequences import (
    SRC_COL,
    build_examples,
    merge_stats,
    partial_stats,
    rejected_from,
    split_duplicates,
)
from semacdr_dist.data.staging import (
    BAD_COL,
    ITEM_PART_COL,
    PART_COL,
    ItemIndex,
    Rejects,
    StagedItems,
    build_stats,
    dense_index,
    dense_item_rows,
    domain_file,
    map_ids,
    resolve,
    shipped_split,
    stage,
)
from semacdr_dist.manifest import ensure_run_dir, finish_stage, owned_files, replacing, should_skip
from semacdr_dist.rundir import RunDir

log = logging.getLogger(__name__)

STAGE = "prepare"
OUTPUTS = ("items", "interactions", "sequences", "rejected", "_staging", "stats.json", STAGE)
# Names of the files prepare writes under OUTPUTS; anything else there is the user's and stays.
OWNED = re.compile(r"(part-\d{5}|part-shipped|[a-z_]+-\d{5}(-[0-9a-f_-]+)?)\.parquet(\.tmp-\w+)?"
                   r"|stats\.json(\.tmp-\w+)?|_SUCCESS\.json|_MANIFEST\.json")
STATS_FILE = "__stats__"  # marks the statistics row among a partition's returned rows
# Interactions per user partition of the per-user pass. A sort shuffle makes
# (input blocks x partitions) objects: 1M rows keeps that ~10k at 100M interactions
# while one partition (~60 MB of rows + its examples) still fits any worker.
ROWS_PER_PARTITION = 1_000_000


def process_partition(
    group: pa.Table,
    *,
    run_uri: str,
    domains: list[str],
    files: list[str],
    max_history: int,
    train_examples: str,
    train_last_n: int,
    leave_one_out: bool,
) -> pa.Table:
    """All interactions of one user partition → its interactions/sequences shards.

    Returns REJECTED rows: the repeated (user, item, timestamp) rows, plus one
    row (file = ``__stats__``) whose record holds the partition's statistics.
    """
    run = RunDir(run_uri)
    part = int(group.column(PART_COL)[0].as_py()) if group.num_rows else 0
    clean, dup = split_duplicates(group)
    run.write_table(f"interactions/part-{part:05d}.parquet", clean.select(INTERACTIONS.names).cast(INTERACTIONS))
    examples = build_examples(
        clean,
        domains,
        max_history=max_history,
        train_examples=train_examples,
        train_last_n=train_last_n,
        leave_one_out=leave_one_out,
    )
    split_col = examples.column("split")
    for split in SPLITS:
        rows = examples.filter(pc.equal(split_col, split)).select(SEQUENCES.names).cast(SEQUENCES)
        run.write_table(f"sequences/{split}/part-{part:05d}.parquet", rows)
    stats = pa.table(
        {"file": [STATS_FILE], "row": [part], "rule": [""], "record": [json.dumps(partial_stats(examples, domains))]},
        schema=REJECTED,
    )
    return pa.concat_tables([rejected_from(dup, files, RULE_DUPLICATE), stats])


def _read_and_map(batch: pa.Table, run_uri: str, index, domains: list[str], n_parts: int) -> pa.Table:
    """Read staged shards (rows of `path`) and map them with :func:`map_ids`."""
    fs = RunDir(run_uri).fs
    index = resolve(index)
    return pa.concat_tables([map_ids(pq.read_table(p, filesystem=fs), index, domains, n_parts) for p in batch.column("path").to_pylist()])


def _keep_rows(batch: pa.Table, bad: bool) -> pa.Table:
    mask = pc.is_valid(batch.column(BAD_COL))
    return batch.filter(mask if bad else pc.invert(mask))


def _domain_counts(flagged, domains: list[str]) -> list[int]:
    """Valid rows per domain of the materialized, flagged rows (two columns read; the lazy
    `_keep_rows` filter is not run an extra time for it)."""
    counts = dict.fromkeys(domains, 0)
    for batch in flagged.select_columns(["domain", BAD_COL]).iter_batches(batch_format="pyarrow", batch_size=1 << 20):
        good = batch.column("domain").filter(pc.is_null(batch.column(BAD_COL)))
        for entry in pc.value_counts(good).to_pylist():
            if entry["values"] in counts:
                counts[entry["values"]] += entry["counts"]
    return [counts[d] for d in domains]


def _require_domains(counts, domains: list[str], data: DataConfig, when: str) -> None:
    """A clear error naming the domain's file when a domain has no valid interaction left."""
    for d, n in zip(domains, counts, strict=True):
        if n == 0:
            raise DataValidationError(domain_file(data, d, "reviews"), None,
                                      f"domain '{d}' is empty (no valid interactions {when})")


def _to_rejected(batch: pa.Table, files: list[str]) -> pa.Table:
    return rejected_from(batch, files, batch.column(BAD_COL).to_pylist())


def _drop_ids(batch: pa.Table, users, items) -> pa.Table:
    users, items = resolve(users), resolve(items)
    keep = pc.and_(
        pc.invert(pc.is_in(batch.column("user_id"), value_set=users)),
        pc.invert(pc.is_in(batch.column("item_id"), value_set=items)),
    )
    return batch.filter(keep)


def _remap_ids(batch: pa.Table, new_of_old) -> pa.Table:
    new_of_old = resolve(new_of_old)
    idx = batch.schema.get_field_index("item_id")
    return batch.set_column(idx, "item_id", pa.array(new_of_old[batch.column("item_id").to_numpy()], pa.int64()))


def _below(batch: pa.Table, key: str, k: int) -> pa.Table:
    return batch.filter(pc.less(batch.column("count()"), k)).select([key])


def _ids_below(ds, key: str, k: int) -> np.ndarray:
    """Ids whose row count is < k: counted by a Ray Data groupby; only those ids reach the driver."""
    low = ds.select_columns([key]).groupby(key).count().map_batches(_below, batch_format="pyarrow", fn_kwargs={"key": key, "k": k})
    parts = [b[key] for b in low.iter_batches(batch_format="numpy", batch_size=None)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def k_core(ds, k: int, max_rounds: int = 100):
    """Drop users and items with < k interactions until none is left; returns (ds, rounds)."""
    import ray

    for rounds in range(1, max_rounds + 1):
        users, items = _ids_below(ds, "user_id", k), _ids_below(ds, "item_id", k)
        if len(users) == 0 and len(items) == 0:
            return ds, rounds
        refs = {"users": ray.put(pa.array(users, pa.int64())), "items": ray.put(pa.array(items, pa.int64()))}
        ds = ds.map_batches(_drop_ids, batch_format="pyarrow", fn_kwargs=refs).materialize()
    raise RuntimeError(f"k-core did not converge in {max_rounds} rounds")


def _reject_flagged(flagged, run: RunDir, rejects: Rejects, files: list[str]) -> None:
    """Unknown-item rows of the mapped dataset → error or `rejected/`."""
    from ray.data.datasource import FilenameProvider

    bad = flagged.map_batches(_keep_rows, batch_format="pyarrow", fn_kwargs={"bad": True}).materialize()
    if bad.count() == 0:
        return
    rows = pa.Table.from_pylist(bad.take(1000)).sort_by([(SRC_COL, "ascending"), (ROW_COL, "ascending")])
    if rejects.mode == "error":
        rejects.add(rejected_from(rows.slice(0, 1), files, rows.column(BAD_COL)[0].as_py()))

    class _Names(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"unknown_item-{task_index:05d}-{write_uuid}.parquet"

    rej = bad.map_batches(_to_rejected, batch_format="pyarrow", fn_kwargs={"files": files}).materialize()
    rej.write_parquet(run.uri_of("rejected"), filesystem=run.fs, filename_provider=_Names())
    for batch in rej.select_columns(["rule"]).iter_batches(batch_format="pyarrow", batch_size=None):
        for r in batch.group_by("rule").aggregate([("rule", "count")]).to_pylist():
            rejects.by_rule[r["rule"]] = rejects.by_rule.get(r["rule"], 0) + int(r["rule_count"])


@contextlib.contextmanager
def shuffle_strategy(name: str) -> Iterator[None]:
    """Ray Data's shuffle for datasets created inside the block (a dataset keeps the context it was made in)."""
    from ray.data import DataContext
    from ray.data.context import ShuffleStrategy

    strategies = {"hash": ShuffleStrategy.HASH_SHUFFLE, "sort": ShuffleStrategy.SORT_SHUFFLE_PULL_BASED}
    if name not in strategies:
        raise ValueError(f"data.shuffle must be 'hash' or 'sort', got {name!r}")
    ctx = DataContext.get_current()
    before = ctx.shuffle_strategy
    ctx.shuffle_strategy = strategies[name]
    try:
        yield
    finally:
        ctx.shuffle_strategy = before


def _dense_items(batch: pa.Table, run_uri: str, index, dropped: dict[int, np.ndarray], part_rows: int) -> pa.Table:
    """Staged item shards (rows of `shard`, `name`) → ITEMS rows with dense ids and output part."""
    run, index = RunDir(run_uri), resolve(index)
    return pa.concat_tables([
        dense_item_rows(run.read_table("_staging", "items", name), index, dropped.get(k), part_rows)
        for k, name in zip(batch.column("shard").to_pylist(), batch.column("name").to_pylist(), strict=True)
    ])


def _write_item_part(group: pa.Table, run_uri: str) -> pa.Table:
    part = int(group.column(ITEM_PART_COL)[0].as_py())
    rows = group.sort_by("item_id").select(ITEMS.names).cast(ITEMS)
    RunDir(run_uri).write_table(f"items/part-{part:05d}.parquet", rows)
    return pa.table({"part": [part], "rows": [rows.num_rows]})


def write_items(items: StagedItems, index: ItemIndex, run: RunDir, part_rows: int) -> int:
    """`items/part-P.parquet`: dense ids [P * part_rows, (P+1) * part_rows), sorted; returns #rows.

    Ray tasks read the staged shards and one groupby(part) pass writes each part: no item
    text passes through the driver.
    """
    import ray

    n_items = int((index.dense_of_sorted >= 0).sum())
    if n_items == 0 or not items.shards:
        run.write_table("items/part-00000.parquet", ITEMS.empty_table())
        return 0
    shards = [{"shard": k, "name": name} for k, name in enumerate(items.shards)]
    n_parts = -(-n_items // part_rows)
    written = (
        ray.data.from_items(shards, override_num_blocks=len(shards))
        .map_batches(_dense_items, batch_format="pyarrow", batch_size=1,
                     fn_kwargs={"run_uri": run.uri, "index": ray.put(index), "dropped": items.dropped, "part_rows": part_rows})
        .groupby(ITEM_PART_COL, num_partitions=min(n_parts, len(shards) * 4))
        .map_groups(_write_item_part, batch_format="pyarrow", fn_kwargs={"run_uri": run.uri})
    )
    counts = pa.concat_tables(list(written.iter_batches(batch_format="pyarrow", batch_size=None)))
    if pc.sum(counts.column("rows")).as_py() != n_items or counts.num_rows != n_parts:
        raise RuntimeError(f"items/: wrote {counts.to_pylist()}, expected {n_items} items in {n_parts} parts")
    return n_items


def _per_user_pass(ds, n_parts: int, fn, kwargs: dict) -> pa.Table:
    """groupby(user partition).map_groups(fn); fn's returned rows, concatenated."""
    out = ds.groupby(PART_COL, num_partitions=n_parts).map_groups(fn, batch_format="pyarrow", fn_kwargs=kwargs)
    parts = list(out.iter_batches(batch_format="pyarrow", batch_size=None))
    return pa.concat_tables([REJECTED.empty_table(), *[p.cast(REJECTED) for p in parts]])


def run_prepare(cfg: PrepareStageConfig, run: RunDir) -> dict:
    """Run the prepare stage (Ray session opened by the caller); returns stats.json's content.

    A finished stage (``prepare/_SUCCESS.json``) is skipped unless ``cfg.force``.
    """
    if should_skip(cfg, run, STAGE):  # raises if it was finished under another config
        log.info("prepare: finished output in %s, skipping (force=true redoes it)", run.uri)
        return run.read_json("stats.json")
    ensure_run_dir(run)  # never delete in a directory we did not create
    ours = owned_files(run, OUTPUTS, OWNED)
    if not run.is_done(STAGE):
        for rel in ours:  # what an interrupted attempt left: partial, nothing to keep
            run.delete(rel)
        ours = []
    # force=true: the previous outputs come back if the redo fails.
    with replacing(run, ours, current=lambda: owned_files(run, OUTPUTS, OWNED), clean_on_failure=True):
        return _prepare(cfg, run)


def _prepare(cfg: PrepareStageConfig, run: RunDir) -> dict:
    import ray

    data: DataConfig = cfg.data
    t0 = time.perf_counter()
    rejects = Rejects(run, data.on_bad_rows)
    staged = stage(data, cfg.seed, run, rejects)
    domains = staged.domains
    index = dense_index(staged.items)
    t_stage = time.perf_counter() - t0
    n_parts = data.num_partitions or max(4, -(-staged.n_interactions // ROWS_PER_PARTITION))

    with shuffle_strategy(data.shuffle):
        # One task per staged shard, reading it with pyarrow: on small clusters Ray's parquet
        # datasource costs seconds of planning per read (benchmarks/prepare.py).
        shards = [{"path": run.path("_staging", "interactions", f)} for f in run.list_files("_staging", "interactions")]
        flagged = (
            ray.data.from_items(shards, override_num_blocks=len(shards))
            .map_batches(
                _read_and_map,
                batch_format="pyarrow",
                batch_size=1,
                fn_kwargs={"run_uri": run.uri, "index": ray.put(index), "domains": domains, "n_parts": n_parts},
            )
            .materialize()
        )
        _reject_flagged(flagged, run, rejects, staged.files)
        t_map = time.perf_counter() - t0
        good = flagged.map_batches(_keep_rows, batch_format="pyarrow", fn_kwargs={"bad": False})
        # A domain dump with no valid row fails here, before k-core and the per-user pass
        # (the expensive part at scale), not after them.
        _require_domains(_domain_counts(flagged, domains), domains, data, "after id mapping")

        kcore_info: dict = {}
        if data.k_core > 0:
            # Counts include rows that the per-user pass later finds repeated (reject mode only).
            good = good.materialize()
            before = good.count()
            good, rounds = k_core(good, data.k_core)
            seen = np.zeros(staged.items.n, dtype=bool)  # one byte per item, not one id per row
            for b in good.select_columns(["item_id"]).iter_batches(batch_format="numpy"):
                seen[b["item_id"]] = True
            kept = np.flatnonzero(seen)
            new_of_old = np.full(staged.items.n, -1, dtype=np.int64)
            new_of_old[kept] = np.arange(len(kept))
            good = good.map_batches(_remap_ids, batch_format="pyarrow", fn_kwargs={"new_of_old": ray.put(new_of_old)})
            index = ItemIndex(index.sorted_raw, new_of_old[index.dense_of_sorted], index.domain_of_dense[kept])
            kcore_info = {"k": data.k_core, "rounds": rounds, "interactions_removed": before - good.count(), "items_kept": len(kept)}
            _require_domains(np.bincount(index.domain_of_dense, minlength=len(domains)), domains, data, f"after the {data.k_core}-core filter")

        write_items(staged.items, index, run, data.chunk_rows)
        returned = _per_user_pass(good, n_parts, process_partition, {
                "run_uri": run.uri,
                "domains": domains,
                "files": staged.files,
                "max_history": data.max_history,
                "train_examples": data.train_examples,
                "train_last_n": data.train_last_n,
                "leave_one_out": not staged.shipped,
            })
    t_user = time.perf_counter() - t0
    is_stats = pc.equal(returned.column("file"), STATS_FILE)
    parts = [json.loads(r) for r in returned.filter(is_stats).column("record").to_pylist()]
    dups = returned.filter(pc.invert(is_stats)).sort_by([("file", "ascending"), ("row", "ascending")])
    rejects.add(dups, "duplicate")

    for split, tables in staged.shipped.items():
        table = shipped_split(pa.concat_tables(tables), index, domains, data.max_history, staged.shipped_files[split], rejects)
        run.write_table(f"sequences/{split}/part-shipped.parquet", table)
        parts.append(partial_stats(table, domains))
    totals = merge_stats(parts, len(domains))
    # Still checked: the per-user pass rejects repeated rows, which can leave a domain empty.
    _require_domains(totals["interactions_per_domain"], domains, data, "after the per-user pass")
    stats = build_stats(data, domains, index.domain_of_dense, totals, rejects, kcore_info, shipped=bool(staged.shipped))
    # cumulative wall seconds at the end of each step
    stats["seconds"] = {
        "stage": round(t_stage, 2),
        "map": round(t_map, 2),
        "per_user": round(t_user, 2),
        "total": round(time.perf_counter() - t0, 2),
    }
    run.delete("_staging")
    run.write_json("stats.json", stats)
    finish_stage(run, STAGE, cfg, {"rows": staged.n_interactions, "rejected": stats["rejected"],
                                   "seconds": stats["seconds"]})
    log.info("prepare: %s", {k: stats[k] for k in ("n_items", "n_interactions", "examples", "rejected")})
    return stats
