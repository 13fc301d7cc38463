"""Model throughput and size: forward+backward sequences/s, parameters, item-tower memory.

Every model at its preset size (configs/model/*.yaml: hidden 64, 2 layers, 2 heads,
max_len 50) on a synthetic catalog (2 domains, 384-d frozen views like MiniLM),
batches of 128 full-length histories, Adam steps. Paths compared side by side in one
run: each model with the default loss, SemaCDR with every loss and fusion, and
1 vs all torch threads (tiny models often run faster on one thread on a busy box).

Item-tower memory per 1M items is measured, not computed: the model's parameter +
buffer bytes at two catalog sizes, the per-item slope scaled to 1M (ID embeddings
and frozen views grow with N, the encoders do not), and the exported item vectors.

Writes benchmarks/results/model.json and .md (`--quick`: model_quick.*).

    .venv/bin/python benchmarks/model.py            # 2,000 items, 30 timed steps per path
    .venv/bin/python benchmarks/model.py --quick    # 500 items, 5 timed steps
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from semacdr_dist.config import load_config
from semacdr_dist.data.catalog import Catalog
from semacdr_dist.model import build_model
from semacdr_dist.model.config import MODEL_NAMES, ModelConfig

RESULTS = Path(__file__).resolve().parent / "results"
FEATURE_DIM = 384  # all-MiniLM-L6-v2, the default text encoder


def _catalog(n: int) -> Catalog:
    return Catalog(n, ["food", "kitchen"], (np.arange(n) >= n // 2).astype(np.int8))


def _features(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for v in ("content", "specific", "agnostic"):
        x = rng.standard_normal((n, FEATURE_DIM), dtype=np.float32)
        out[v] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _batch(cat: Catalog, b: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    hist = rng.integers(0, cat.n_items, size=(b, length))
    tdom = rng.integers(0, len(cat.domains), size=b)
    target = np.array([rng.choice(cat.domain_items(d)) for d in tdom])
    return {"history": torch.from_numpy(hist), "history_domain": torch.from_numpy(cat.item_domain[hist].astype(np.int64)),
            "target": torch.from_numpy(target), "target_domain": torch.from_numpy(tdom), "user_id": torch.arange(b)}


def _model_bytes(model: torch.nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _steps_per_s(cfg: ModelConfig, cat: Catalog, feats, batch, steps: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(cfg, cat, feats)
    if not model.trainable:  # popularity: one counting pass is its whole "training"
        t0 = time.perf_counter()
        for _ in range(steps):
            model.fit([batch])
        dt = time.perf_counter() - t0
        return {"seq_per_s": batch["target"].shape[0] * steps / dt, "cpu_s_per_step": dt / steps,
                "params": 0}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step():
        opt.zero_grad()
        loss, _ = model.calculate_loss(batch)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up
        step()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seq_per_s": batch["target"].shape[0] * steps / wall, "cpu_s_per_step": cpu / steps,
            "params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def _tower_memory(cfg: ModelConfig, n1: int, n2: int) -> dict:
    """Bytes per item (slope between two catalog sizes) → MiB per 1M items; item_vectors() speed."""
    torch.set_num_threads(1)
    sizes = []
    for n in (n1, n2):
        model = build_model(cfg, _catalog(n), _features(n))
        sizes.append(_model_bytes(model))
    per_item = (sizes[1] - sizes[0]) / (n2 - n1)
    model.eval()
    with torch.no_grad():
        t0 = time.perf_counter()
        vec = model.item_vectors()
        dt = time.perf_counter() - t0
    return {"train_mib_per_1m_items": per_item * 1e6 / 2**20,
            "export_mib_per_1m_items": vec.shape[1] * vec.element_size() * 1e6 / 2**20,
            "item_vectors_per_s": n2 / dt, "dim": int(vec.shape[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    if args.quick:
        args.items, args.steps = 500, 5
    all_threads = torch.get_num_threads()
    thread_counts = sorted({1, all_threads})
    cat, feats = _catalog(args.items), _features(args.items)
    presets = {name: load_config([f"model={name}"]).model for name in MODEL_NAMES}
    batch = _batch(cat, args.batch, presets["semacdr"].max_len)

    paths: list[tuple[str, ModelConfig]] = [(name, cfg) for name, cfg in presets.items()]
    base = presets["semacdr"]
    for loss in ("sampled", "bce"):
        paths.append((f"semacdr loss={loss}", ModelConfig(**{**vars(base), "loss": loss})))
    for fusion in ("concat", "attention"):
        paths.append((f"semacdr fusion={fusion}", ModelConfig(**{**vars(base), "fusion": fusion})))
    paths.append(("semacdr separate encoders", ModelConfig(**{**vars(base), "share_thread_encoders": False})))

    rows = []
    for label, cfg in paths:
        row = {"path": label, "model": cfg.name}
        for th in thread_counts:
            r = _steps_per_s(cfg, cat, feats, batch, args.steps, th)
            row[f"seq_per_s@{th}t"] = r["seq_per_s"]
            row[f"cpu_s_per_step@{th}t"] = r["cpu_s_per_step"]
            row["params"] = r["params"]
        if label in presets:
            row.update(_tower_memory(cfg, args.items, 2 * args.items))
        rows.append(row)
        print(json.dumps(row), flush=True)

    out = {"benchmark": "model", "quick": args.quick, "items": args.items, "batch": args.batch,
           "history_len": presets["semacdr"].max_len, "feature_dim": FEATURE_DIM, "steps": args.steps,
           "torch": torch.__version__, "threads": thread_counts, "machine": platform.node(),
           "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "rows": rows}
    stem = "model_quick" if args.quick else "model"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=2))
    (RESULTS / f"{stem}.md").write_text(_markdown(out))
    print((RESULTS / f"{stem}.md").read_text())


def _markdown(out: dict) -> str:
    th = out["threads"]
    head = ["path", "params"] + [f"seq/s ({t} thr)" for t in th] + [f"CPU s/step ({t} thr)" for t in th] + \
        ["train MiB / 1M items", "export MiB / 1M items", "item vectors/s"]
    lines = [
        f"## model: forward+backward throughput ({out['items']} items, batch {out['batch']}, "
        f"history {out['history_len']}, {out['feature_dim']}-d views; torch {out['torch']}, "
        f"{out['cpus']} CPUs, load avg {out['load_avg_1m']:.1f})",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in out["rows"]:
        cells = [r["path"], f"{r['params']:,}"]
        cells += [f"{r[f'seq_per_s@{t}t']:,.0f}" for t in th]
        cells += [f"{r[f'cpu_s_per_step@{t}t']:.3f}" for t in th]
        if "train_mib_per_1m_items" in r:
            cells += [f"{r['train_mib_per_1m_items']:,.0f}", f"{r['export_mib_per_1m_items']:,.0f}",
                      f"{r['item_vectors_per_s']:,.0f}"]
        else:
            cells += ["", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Train MiB per 1M items = ID embeddings + frozen feature views (+ Adam state not "
              "included); export = the fused item vectors (float32) the evaluator indexes.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
