"""Dropout on CPU: ATen's kernel (`bernoulli_` mask) vs `model.layers.Dropout` (`rand` mask).

Side by side in one run, alternating the two kernels in rounds so that a busy box slows
both alike; the best round of each is kept:

- the kernel alone: forward + backward of one [6000, 128] activation (a Food-Kitchen
  batch of 512 histories after length grouping), ns per element;
- one train step (forward, backward, Adam) of each model at the quality table's size
  (36,298 items, 2 domains, 384-d views, batch 512, histories with geometric lengths of
  mean 6, at most 50: the Food-Kitchen train split's mean is 5.8), sequences/s.

Writes benchmarks/results/dropout.{json,md} (`--quick`: dropout_quick.*).

    .venv/bin/python benchmarks/dropout.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import _catalog, _features  # noqa: E402

from semacdr_dist.config import load_config  # noqa: E402
from semacdr_dist.hardware import machine_summary  # noqa: E402
from semacdr_dist.model import build_model, layers  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OURS = layers.Dropout.forward
KERNELS = {"aten": nn.Dropout.forward, "rand": OURS}


def _use(kernel: str) -> None:
    layers.Dropout.forward = KERNELS[kernel]


def _batch(n_items: int, batch: int, max_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    cat = _catalog(n_items)
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(1 / 6, batch), max_len)
    hist = np.full((batch, max_len), layers.PAD)
    for i, n in enumerate(lengths):
        hist[i, max_len - n:] = rng.integers(0, n_items, n)
    hdom = np.where(hist >= 0, cat.item_domain[np.maximum(hist, 0)], 0).astype(np.int64)
    tdom = rng.integers(0, 2, batch)
    target = np.array([rng.choice(cat.domain_items(d)) for d in tdom])
    return {"history": torch.from_numpy(hist), "history_domain": torch.from_numpy(hdom),
            "target": torch.from_numpy(target), "target_domain": torch.from_numpy(tdom),
            "user_id": torch.arange(batch)}


def _kernel_ns(p: float, rounds: int, reps: int) -> dict[str, float]:
    x = torch.randn(6000, 128, requires_grad=True)
    drop = layers.Dropout(p).train()
    best = {k: float("inf") for k in KERNELS}
    for _ in range(rounds):
        for k in KERNELS:
            _use(k)
            t0 = time.perf_counter()
            for _ in range(reps):
                drop(x).sum().backward()
            best[k] = min(best[k], (time.perf_counter() - t0) / reps / x.numel() * 1e9)
    return best


def _model_seq_s(name: str, n_items: int, batch: dict, rounds: int, steps: int) -> dict[str, float]:
    cfg = load_config([f"model={name}", "model.loss=sampled"]).model
    torch.manual_seed(0)
    model = build_model(cfg, _catalog(n_items), _features(n_items))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        loss, _ = model.calculate_loss(batch)
        loss.backward()
        opt.step()

    best = {k: 0.0 for k in KERNELS}
    for _ in range(rounds):
        for k in KERNELS:
            _use(k)
            step()  # warm-up after the switch
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            best[k] = max(best[k], len(batch["target"]) * steps / (time.perf_counter() - t0))
    return {**best, "dropout": cfg.dropout}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n_items, rounds, steps = (2000, 2, 2) if args.quick else (36298, 3, 8)
    batch = _batch(n_items, 512, 50)
    kernel = {p: _kernel_ns(p, rounds, 5 if args.quick else 20) for p in (0.2, 0.5)}
    models = {}
    for name in ("llm4cdsr", "semacdr", "sasrec", "sasrec_text"):
        models[name] = _model_seq_s(name, n_items, batch, rounds, steps)
        print(name, models[name], flush=True)
    _use("rand")
    out = {"benchmark": "dropout", "quick": args.quick, "items": n_items, "batch": 512, "threads": 1,
           "torch": torch.__version__, "machine": machine_summary(), "host": platform.node(),
           "load_avg_1m": os.getloadavg()[0], "kernel_ns_per_element": kernel, "train_seq_per_s": models}
    stem = "dropout_quick" if args.quick else "dropout"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=2))
    (RESULTS / f"{stem}.md").write_text(_markdown(out))
    print((RESULTS / f"{stem}.md").read_text())


def _markdown(out: dict) -> str:
    m = out["machine"]
    lines = ["## dropout on CPU: ATen (`bernoulli_` mask) vs `layers.Dropout` (`rand` mask)", "",
             f"{m.get('cpu_model')}, flags {' '.join(m.get('flags', []))}; torch {out['torch']}, 1 thread, "
             f"load avg {out['load_avg_1m']:.1f} (best of alternating rounds).", "",
             "| kernel, fwd+bwd of [6000, 128] | ATen ns/element | rand ns/element | speed-up |", "|---|---:|---:|---:|"]
    for p, r in out["kernel_ns_per_element"].items():
        lines.append(f"| p = {p} | {r['aten']:.1f} | {r['rand']:.1f} | {r['aten'] / r['rand']:.2f}x |")
    lines += ["", f"| train step, {out['items']:,} items, batch {out['batch']} | dropout | ATen seq/s | rand seq/s "
              "| rand / ATen |", "|---|---:|---:|---:|---:|"]
    for name, r in out["train_seq_per_s"].items():
        lines.append(f"| {name} | {r['dropout']} | {r['aten']:,.0f} | {r['rand']:,.0f} | {r['rand'] / r['aten']:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
