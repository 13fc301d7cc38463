"""Training throughput: plain torch vs Ray Train + DeepSpeed (1 and 2 workers), one run.

(a) a single-process torch loop (torch AdamW, in-process collate, 1 thread),
(b) Ray Train + DeepSpeed ZeRO-1 with 1 worker (1 CPU), fed by Ray Data streaming,
(c) the same with 2 workers (1 CPU each);
same model (SemaCDR), batch size and data. Sequences/s is the median over epochs
after the first (the first pays for pipeline start-up); validation time is excluded.
Also records peak RSS per worker, the ratio (b)/(a) (goal >= 0.85) and (c)/(b).

    .venv/bin/python benchmarks/train.py [--quick] [--users N] [--epochs E]

Writes benchmarks/results/train.json and benchmarks/results/train.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semacdr_dist.runtime import RayConfig, engine_env, ray_session  # noqa: E402

engine_env()

from semacdr_dist.data.schemas import ITEMS, SEQUENCES, features_schema  # noqa: E402
from semacdr_dist.rundir import RunDir  # noqa: E402

log = logging.getLogger("benchmarks.train")
DOMAINS = ["books", "movies"]


def make_run(root: str, n_users: int, items_per_domain: int, seq_len: int, dim: int, seed: int = 0) -> RunDir:
    """A synthetic prepared run: per-user walks through a domain with cross-domain hops."""
    rng = np.random.default_rng(seed)
    run = RunDir(root)
    n = items_per_domain * len(DOMAINS)
    item_domain = np.repeat(np.arange(len(DOMAINS)), items_per_domain)
    run.write_table("items/part-00000.parquet", pa.table({
        "item_id": np.arange(n, dtype=np.int64), "domain": [DOMAINS[d] for d in item_domain],
        "raw_id": [f"i{i}" for i in range(n)], "title": [f"item {i}" for i in range(n)],
        "categories": [[DOMAINS[d]] for d in item_domain], "brand": ["b"] * n, "description": ["d"] * n,
    }, schema=ITEMS))
    rows = {s: {k: [] for k in SEQUENCES.names} for s in ("train", "valid", "test")}
    for u in range(n_users):
        d, start = rng.integers(len(DOMAINS)), rng.integers(items_per_domain)
        dom = np.where(rng.random(seq_len) < 0.8, d, 1 - d)
        pos = np.where(rng.random(seq_len) < 0.9, start + np.arange(seq_len), rng.integers(items_per_domain, size=seq_len))
        seq = (dom * items_per_domain + pos % items_per_domain).tolist()
        for t in range(2, seq_len):
            split = "test" if t == seq_len - 1 else "valid" if t == seq_len - 2 else "train"
            r = rows[split]
            r["user_id"].append(u), r["split"].append(split), r["target_domain"].append(DOMAINS[dom[t]])
            r["history"].append(seq[:t]), r["history_domain"].append(dom[:t].tolist()), r["target"].append(seq[t])
    for split, r in rows.items():
        run.write_table(f"sequences/{split}/part-00000.parquet", pa.table(r, schema=SEQUENCES))
    run.write_json("stats.json", {"domains": DOMAINS, "n_items": n, "n_users": n_users})
    vec = rng.normal(size=(3, n, dim)).astype(np.float32)
    run.write_table("features/part-00000.parquet", pa.table({
        "item_id": np.arange(n, dtype=np.int64),
        **{v: pa.array(list(vec[j]), type=pa.list_(pa.float32(), dim)) for j, v in enumerate(("content", "specific", "agnostic"))},
        "encoder": ["bench-random"] * n,
    }, schema=features_schema(dim)))
    return run


def plain_torch(run: RunDir, model_cfg, tcfg, seed: int) -> dict:
    """(a): the same model and batch in one process: collate + forward + backward + AdamW step."""
    import torch

    from semacdr_dist.data.batch import collate_rows
    from semacdr_dist.model import build_model
    from semacdr_dist.train.state import load_inputs

    torch.set_num_threads(1)  # a Ray worker with 1 CPU runs torch on 1 thread (OMP_NUM_THREADS=1)
    torch.manual_seed(seed)
    catalog, features = load_inputs(run, True)
    model = build_model(model_cfg, catalog, features)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tcfg.lr)
    table = run.read_table("sequences", "train")
    rates = []
    for epoch in range(tcfg.epochs):
        order = np.random.default_rng(seed + epoch).permutation(table.num_rows)
        shuffled = table.take(order)
        model.train()
        t0 = time.perf_counter()
        for start in range(0, table.num_rows, tcfg.batch_size):
            batch = collate_rows(shuffled.slice(start, tcfg.batch_size), model_cfg.max_len, catalog.domains)
            loss, _ = model.calculate_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.clip)
            opt.step()
        rates.append(table.num_rows / (time.perf_counter() - t0))
        log.info("plain torch epoch %d: %.1f seq/s", epoch, rates[-1])
    return {"seq_per_s_epochs": rates, "seq_per_s": _steady(rates),
            "peak_rss_mb": [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024], "threads": 1}


def ray_deepspeed(run: RunDir, model_cfg, tcfg, seed: int, workers: int, tag: str = "") -> dict:
    """(b)/(c): the stage's TorchTrainer with `workers` ranks; rates from its metrics.jsonl."""
    from dataclasses import replace

    from semacdr_dist.train.state import read_metrics
    from semacdr_dist.train.trainer import build_trainer

    cfg = replace(tcfg, num_workers=workers)
    name = f"bench_w{workers}{tag}"
    t0 = time.perf_counter()
    result = build_trainer(run, model_cfg, cfg, seed=seed, name=name).fit()
    if result.error is not None:
        raise RuntimeError(f"{name} failed: {result.error}")
    wall = time.perf_counter() - t0
    records = read_metrics(run, name)
    rates = [r["train/seq_per_s"] for r in records]
    rss = [max(r["worker/peak_rss_mb"][i] for r in records) for i in range(workers)]
    return {"seq_per_s_epochs": rates, "seq_per_s": _steady(rates), "peak_rss_mb": rss, "threads": workers,
            "fit_wall_s": wall, "valid_ndcg@10": records[-1].get("valid/ndcg@10")}


def _steady(rates: list[float]) -> float:
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run (~2 min)")
    ap.add_argument("--users", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    users = args.users or (300 if args.quick else 600)
    epochs = args.epochs or (2 if args.quick else 3)
    seq_len, items_per_domain, dim = 20, 500, 32

    from semacdr_dist.model.config import ModelConfig
    from semacdr_dist.train.config import TrainConfig

    model_cfg = ModelConfig(name="semacdr", hidden_dim=64, num_layers=2, max_len=seq_len, adapter_hidden=0)
    tcfg = TrainConfig(zero_stage=1, precision="fp32", epochs=epochs, batch_size=args.batch_size, patience=0,
                       warmup=10, keep_best_k=1, shuffle_buffer=1024, valid_max_examples=256, max_failures=0)
    tmp = tempfile.mkdtemp(prefix="bench-train-", dir="/tmp")
    run = make_run(tmp, users, items_per_domain, seq_len, dim)
    n_train = run.read_table("sequences", "train", columns=["target"]).num_rows
    log.info("benchmark run %s: %d train sequences, %d items", tmp, n_train, items_per_domain * 2)

    results: dict = {}
    results["a_plain_torch"] = plain_torch(run, model_cfg, tcfg, seed=0)
    with ray_session(RayConfig(num_cpus=4, object_store_memory_mb=512)):
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        results["b_ray_deepspeed_1w"] = ray_deepspeed(run, model_cfg, tcfg, 0, 1)
        results["c_ray_deepspeed_2w"] = ray_deepspeed(run, model_cfg, tcfg, 0, 2)
        # (d): one worker holding both CPUs (2 intra-op threads): what quality.py uses on 2 cores.
        from dataclasses import replace

        d = ray_deepspeed(run, model_cfg, replace(tcfg, resources_per_worker={"CPU": 2}), 0, 1, tag="1w2t")
        d["threads"] = 2
        results["d_ray_deepspeed_1w_2t"] = d
    a, b, c = (results[k]["seq_per_s"] for k in ("a_plain_torch", "b_ray_deepspeed_1w", "c_ray_deepspeed_2w"))
    out = {
        "benchmark": "train",
        "quick": args.quick,
        "host": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1m": os.getloadavg()[0]},
        "setup": {"model": "semacdr", "hidden_dim": 64, "num_layers": 2, "max_len": seq_len,
                  "n_items": 2 * items_per_domain, "feature_dim": dim, "train_sequences": n_train,
                  "batch_size": args.batch_size, "epochs": epochs, "zero_stage": 1, "precision": "fp32"},
        "results": results,
        "ratio_b_over_a": b / a,
        "ratio_c_over_b": c / b,
        "ratio_d_over_b": results["d_ray_deepspeed_1w_2t"]["seq_per_s"] / b,
        "goal_b_over_a": 0.85,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "train.json").write_text(json.dumps(out, indent=2))
    lines = [
        f"# Train throughput (SemaCDR, fp32, batch {args.batch_size}, {n_train} train sequences, "
        f"{os.cpu_count()} CPUs, load {out['host']['load_avg_1m']:.1f})",
        "",
        "| path | workers x threads | sequences/s (median, epochs >= 2) | per-epoch seq/s | peak RSS per worker (MiB) |",
        "|---|---|---|---|---|",
    ]
    labels = {"a_plain_torch": "(a) plain torch, 1 process", "b_ray_deepspeed_1w": "(b) Ray Train + DeepSpeed ZeRO-1",
              "c_ray_deepspeed_2w": "(c) Ray Train + DeepSpeed ZeRO-1",
              "d_ray_deepspeed_1w_2t": "(d) Ray Train + DeepSpeed ZeRO-1, 1 worker x 2 CPUs"}
    for k, label in labels.items():
        r = results[k]
        shape = "1 x 2" if k.startswith("d_") else f"{r['threads']} x 1"
        lines.append(f"| {label} | {shape} | {r['seq_per_s']:.1f} | "
                     + ", ".join(f"{x:.0f}" for x in r["seq_per_s_epochs"])
                     + f" | {', '.join(f'{x:.0f}' for x in r['peak_rss_mb'])} |")
    lines += ["", f"(b)/(a) = **{out['ratio_b_over_a']:.2f}** (goal >= 0.85); (c)/(b) = {out['ratio_c_over_b']:.2f}; "
              f"(d)/(b) = {out['ratio_d_over_b']:.2f}", ""]
    (Path(args.out) / "train.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
