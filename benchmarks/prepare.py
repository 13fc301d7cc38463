"""Prepare-stage throughput on synthetic interactions: the Ray Data path vs a single-process
pyarrow baseline, in one run, on the same input.

The input (default ~1M interactions, 50k users, 20k items, 2 domains) is generated once
by the synthetic catalog and written as a parquet pair (source=tabular), so both paths
read, check, map ids, de-duplicate, split and write the same data:

* ``ray-sort`` / ``ray-hash``: ``run_prepare`` (driver staging, then Ray Data map +
  one groupby(user partition).map_groups pass, with the sort or the hash shuffle);
* ``pyarrow``: the same kernels (``stage``, ``map_ids``, ``split_duplicates``,
  ``build_examples``) over the whole table in this one process, no Ray.

Both outputs are checked to hold the same examples. Writes benchmarks/results/prepare.json
and .md (rows/s = input interactions / wall seconds).

    .venv/bin/python benchmarks/prepare.py           # ~1M interactions
    .venv/bin/python benchmarks/prepare.py --quick   # ~50k interactions
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from semacdr_dist.config import load_config
from semacdr_dist.data.config import SyntheticConfig
from semacdr_dist.data.prepare import run_prepare
from semacdr_dist.data.schemas import INTERACTIONS, ITEMS, SEQUENCES
from semacdr_dist.data.sequences import build_examples, split_duplicates
from semacdr_dist.data.staging import Rejects, dense_index, dense_item_rows, map_ids, stage
from semacdr_dist.data.synthetic import iter_interactions, iter_items
from semacdr_dist.pipeline import prepare_config
from semacdr_dist.rundir import RunDir
from semacdr_dist.runtime import RayConfig, ray_session

RESULTS = Path(__file__).resolve().parent / "results"


def write_input(root: Path, n_users: int, n_items: int, seed: int) -> int:
    """Synthetic catalog → items.parquet + interactions.parquet (streamed); returns #interactions."""
    cfg = SyntheticConfig(n_items=n_items, n_users=n_users, chunk_users=10_000)
    with pq.ParquetWriter(root / "items.parquet", ITEMS) as w:
        for t in iter_items(cfg, seed):
            w.write_table(t.select(ITEMS.names).cast(ITEMS))
    n = 0
    with pq.ParquetWriter(root / "interactions.parquet", INTERACTIONS) as w:
        for t in iter_interactions(cfg, seed):
            w.write_table(t.select(INTERACTIONS.names).cast(INTERACTIONS))
            n += t.num_rows
    return n


def single_process(cfg, out: Path) -> dict:
    """The baseline: every step in this process with pyarrow/numpy, no Ray."""
    run = RunDir(out)
    rejects = Rejects(run, "error")
    staged = stage(cfg.data, cfg.seed, run, rejects)
    index = dense_index(staged.items)
    items = pa.concat_tables([
        dense_item_rows(run.read_table("_staging", "items", name), index, staged.items.dropped.get(k), 1 << 62)
        for k, name in enumerate(staged.items.shards)
    ]).sort_by("item_id").select(ITEMS.names)
    inter = pq.read_table(run.path("_staging", "interactions"))
    flagged = map_ids(inter, index, staged.domains, 1)
    assert flagged.column("_bad").null_count == flagged.num_rows
    clean, dup = split_duplicates(flagged)
    assert dup.num_rows == 0
    run.write_table("items/part-00000.parquet", items)
    run.write_table("interactions/part-00000.parquet", clean.select(INTERACTIONS.names).cast(INTERACTIONS))
    ex = build_examples(clean, staged.domains, max_history=cfg.data.max_history)
    counts = {}
    for split in ("train", "valid", "test"):
        rows = ex.filter(pc.equal(ex["split"], split)).select(SEQUENCES.names).cast(SEQUENCES)
        run.write_table(f"sequences/{split}/part-00000.parquet", rows)
        counts[split] = rows.num_rows
    return counts


def _digest(run: RunDir) -> dict:
    out = {}
    for split in ("train", "valid", "test"):
        t = run.read_table("sequences", split, columns=["user_id", "target", "history"])
        lens = pc.list_value_length(t["history"]).to_numpy()
        out[split] = [t.num_rows, int(pc.sum(t["user_id"]).as_py()), int(pc.sum(t["target"]).as_py()), int(lens.sum())]
    return out


def _identity(batch):
    return batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="~50k interactions")
    ap.add_argument("--users", type=int, default=None)
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--paths", default="pyarrow,ray-sort,ray-hash")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    n_users = args.users or (2_500 if args.quick else 50_000)
    n_items = args.items or (2_000 if args.quick else 20_000)
    tmp = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    raw = tmp / "raw"
    raw.mkdir()
    t = time.perf_counter()
    n_rows = write_input(raw, n_users, n_items, seed=0)
    gen_s = time.perf_counter() - t
    cfg = load_config(["data.source=tabular", f"data.path={raw}", "force=true"])
    results: list[dict] = []
    digests = {}
    with ray_session(RayConfig(num_cpus=4, object_store_memory_mb=1536)):
        import ray

        # Start Ray's worker processes before timing: that cost is paid once per session, not per run.
        ray.data.range(64, override_num_blocks=8).map_batches(_identity).materialize()
        for name in args.paths.split(","):
            for rep in range(args.repeats):
                out = tmp / f"{name}-{rep}"
                t = time.perf_counter()
                if name == "pyarrow":
                    single_process(cfg, out)
                    detail = {}
                else:
                    cfg.data.shuffle = name.split("-", 1)[1]
                    stats = run_prepare(prepare_config(cfg), RunDir(out))
                    detail = {"cumulative_s": stats["seconds"]}
                wall = time.perf_counter() - t
                digests[name] = _digest(RunDir(out))
                results.append({"path": name, "repeat": rep, "seconds": round(wall, 2), "rows_per_s": round(n_rows / wall), **detail})
                print(f"{name:9s} rep {rep}: {wall:7.2f} s  {n_rows / wall:12,.0f} rows/s", flush=True)
                shutil.rmtree(out, ignore_errors=True)
    same = len({json.dumps(d, sort_keys=True) for d in digests.values()}) == 1
    best = {}
    for r in results:
        best[r["path"]] = min(best.get(r["path"], float("inf")), r["seconds"])
    base = best.get("pyarrow")
    report = {
        "benchmark": "prepare",
        "interactions": n_rows,
        "users": n_users,
        "items": n_items,
        "input_generation_s": round(gen_s, 2),
        "outputs_identical": same,
        "examples": digests[next(iter(digests))],
        "results": results,
        "best_seconds": best,
        "best_rows_per_s": {k: round(n_rows / v) for k, v in best.items()},
        "speedup_vs_pyarrow": {k: round(base / v, 3) for k, v in best.items()} if base else {},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1m_at_end": os.getloadavg()[0]},
        "quick": args.quick,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prepare.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# prepare: {n_rows:,} synthetic interactions ({n_users:,} users, {n_items:,} items)",
        "",
        "| path | best seconds | rows/s | vs pyarrow | all runs (s) |",
        "|---|---:|---:|---:|---|",
    ]
    for path, sec in best.items():
        runs = ", ".join(str(r["seconds"]) for r in results if r["path"] == path)
        lines.append(f"| {path} | {sec} | {round(n_rows / sec):,} | {report['speedup_vs_pyarrow'].get(path, '')} | {runs} |")
    lines += ["", f"Outputs identical across paths: {same}. Machine: {os.cpu_count()} CPUs, 1-min load {os.getloadavg()[0]:.1f} at the end."]
    (RESULTS / "prepare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
