"""Quality table: SemaCDR vs four baselines (+ ablations) through the full pipeline.

    python benchmarks/quality.py                      # Food-Kitchen from ../shared, 3 seeds
    python benchmarks/quality.py --data synthetic     # the embedded catalog (smoke / demo scale)
    python benchmarks/quality.py --seeds 0 --variants semacdr sasrec

One prepare + one semantics run (views come from, and go back to, the portable
view cache under benchmarks/cache/<data>/, so generation happens once per
catalog); then, per seed and variant, train + evaluate in a run directory that
links the shared inputs. Writes benchmarks/results/quality.{json,md}: mean ± sd
over seeds of full-corpus (target-domain) and 100-sampled-negative metrics,
overall, per domain and for cold-start users, with the command that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from semacdr_dist.config import load_config  # noqa: E402
from semacdr_dist.rundir import RunDir  # noqa: E402
from semacdr_dist.runtime import ray_session  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SHARED_INPUTS = ("items", "interactions", "sequences", "features", "views", "semantics", "stats.json")

# variant -> Hydra overrides (model group + ablation switches).
VARIANTS: dict[str, list[str]] = {
    "semacdr": ["model=semacdr"],
    "sasrec": ["model=sasrec"],
    "sasrec_text": ["model=sasrec_text"],
    "llm4cdsr": ["model=llm4cdsr"],
    "pop": ["model=pop"],
    # ablations of SemaCDR
    "semacdr-content_only": ["model=semacdr", "model.views=[content]", "model.contrastive_weight=0"],
    "semacdr-no_agnostic": ["model=semacdr", "model.views=[content,specific]", "model.contrastive_weight=0"],
    "semacdr-no_contrastive": ["model=semacdr", "model.contrastive_weight=0"],
    "semacdr-no_gate": ["model=semacdr", "model.gate=mean"],
}
DATA = {
    "food_kitchen": ["data=food_kitchen"],
    "synthetic": ["data=synthetic"],
    "synthetic_small": ["data=synthetic_small"],
}


def link_inputs(base: RunDir, run_dir: Path) -> None:
    """Share prepared data, views and features between variant runs (local run dirs)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in SHARED_INPUTS:
        src, dst = Path(base.local_path(name)), run_dir / name
        if src.exists() and not dst.exists():
            dst.symlink_to(src)


def headline(metrics: dict[str, float], domains: list[str], split: str = "test") -> dict[str, float]:
    keys = [f"{split}/{m}@10" for m in ("ndcg", "hr", "mrr")]
    keys += [f"{split}/{d}/ndcg@10" for d in domains]
    keys += [f"{split}/cold/ndcg@10", f"{split}/warm/ndcg@10", f"{split}/sampled/ndcg@10", f"{split}/sampled/hr@10"]
    return {k: metrics[k] for k in keys if k in metrics}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def markdown(result: dict) -> str:
    cols = result["columns"]
    lines = [
        "# Quality: SemaCDR vs baselines",
        "",
        f"Command: `{result['command']}`",
        f"Data: {result['data']}; seeds {result['seeds']}; split `test`; candidates: target-domain catalog "
        "(full ranking), and 100 sampled target-domain negatives (`sampled/`).",
        f"Machine: {result['machine']}; total {result['seconds'] / 60:.1f} min.",
        "",
        "| variant | " + " | ".join(c.removeprefix("test/") for c in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for variant, row in result["table"].items():
        cells = [f"{row[c]['mean']:.4f} ± {row[c]['sd']:.4f}" if c in row else "–" for c in cols]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    if result.get("ratios"):
        lines += ["", "Ratios of means, SemaCDR / SASRec (ID):", ""]
        lines += [f"- {k}: {v:.3f}" for k, v in result["ratios"].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=sorted(DATA), default="food_kitchen")
    ap.add_argument("--data-path", default=str(REPO.parent / "shared" / "data" / "food-kitchen"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--run-root", default=str(REPO / "runs" / "quality"))
    ap.add_argument("--cache", default=None, help="view cache (default benchmarks/cache/<data>)")
    ap.add_argument("--out", default=str(RESULTS / "quality"))
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = ap.parse_args()

    cache = args.cache or str(REPO / "benchmarks" / "cache" / args.data.replace("_", "-"))
    base_dir = Path(args.run_root) / args.data
    common = [*DATA[args.data], f"llm.cache_path={cache}", *args.overrides]
    if args.data == "food_kitchen":
        common.append(f"data.path={args.data_path}")
    t0 = time.perf_counter()
    base_cfg = load_config([*common, "model=semacdr", f"run_dir={base_dir}"])
    base = RunDir(base_cfg.run_dir)
    from semacdr_dist.data.prepare import run_prepare
    from semacdr_dist.evaluate.stage import run_evaluate
    from semacdr_dist.semantics.stage import run_semantics
    from semacdr_dist.train.stage import run_train

    per_variant: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    with ray_session(base_cfg.ray):
        run_prepare(base_cfg, base)
        run_semantics(base_cfg, base)
        domains = base.read_json("stats.json")["domains"]
        for seed in args.seeds:
            for variant in args.variants:
                run_dir = base_dir / f"seed{seed}" / variant
                link_inputs(base, run_dir)
                cfg = load_config([*common, *VARIANTS[variant], f"seed={seed}", f"run_dir={run_dir}"])
                run = RunDir(cfg.run_dir)
                run_train(cfg, run, cfg.model.name)
                result = run_evaluate(cfg, run, cfg.model.name)
                metrics = result.get("metrics", result)
                per_variant[variant].append(headline(metrics, domains))
                print(f"seed {seed} {variant}: {per_variant[variant][-1]}", flush=True)

    columns = sorted({k for rows in per_variant.values() for r in rows for k in r},
                     key=lambda k: (k.count("/"), k))
    table = {
        v: {c: dict(zip(("mean", "sd"), mean_sd([r[c] for r in rows if c in r]), strict=True))
            for c in columns if any(c in r for r in rows)}
        for v, rows in per_variant.items() if rows
    }
    ratios = {}
    if "semacdr" in table and "sasrec" in table:
        for c in columns:
            if "ndcg@10" in c and c in table["semacdr"] and table["sasrec"].get(c, {}).get("mean"):
                ratios[c] = table["semacdr"][c]["mean"] / table["sasrec"][c]["mean"]
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "data": args.data,
        "seeds": args.seeds,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "seconds": time.perf_counter() - t0,
        "columns": columns,
        "table": table,
        "ratios": ratios,
        "runs": per_variant,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
