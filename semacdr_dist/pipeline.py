"""The pipeline: prepare → semantics → train → evaluate over one run directory.

Each stage is a plain function ``run_<stage>(cfg, run, ...)`` in its package;
this module only orders them, times them and writes the summary.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from semacdr_dist.config import Config
from semacdr_dist.hardware import machine_summary, resolve_dtype, resolve_precision
from semacdr_dist.lease import RunLease
from semacdr_dist.manifest import check_unchanged, ensure_run_dir
from semacdr_dist.profiling import PeakRSS
from semacdr_dist.rundir import RunDir
from semacdr_dist.runtime import ray_session

log = logging.getLogger(__name__)

STAGES = ("prepare", "semantics", "train", "evaluate")
STAGE_FUNCTIONS = {
    "prepare": "semacdr_dist.data.prepare:run_prepare",
    "semantics": "semacdr_dist.semantics.stage:run_semantics",
    "train": "semacdr_dist.train.stage:run_train",
    "evaluate": "semacdr_dist.evaluate.stage:run_evaluate",
}
# Models whose item tower reads the semantic features (the others need no LLM stage).
FEATURE_MODELS = {"semacdr", "sasrec_text", "llm4cdsr"}
SUMMARY_METRICS = ("ndcg@10", "hr@10", "mrr@10")


def stage_function(stage: str) -> Callable[..., dict]:
    module, name = STAGE_FUNCTIONS[stage].split(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class PipelineResult:
    run_dir: str
    timings: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    report: str | None = None
    wall_seconds: float = 0.0
    peak_tree_rss_gib: float = 0.0  # summed RSS of the driver and every local Ray process
    machine: dict[str, Any] = field(default_factory=dict)


def models_to_run(cfg: Config) -> list[str]:
    names = [cfg.model.name] + [b for b in cfg.baselines if b != cfg.model.name]
    return list(dict.fromkeys(names))


def save_config(cfg: Config, run: RunDir) -> None:
    run.write_bytes("config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg)).encode())


def run_pipeline(cfg: Config, stages: tuple[str, ...] = STAGES, models: list[str] | None = None) -> PipelineResult:
    """Run the given stages in order (each skips what is already finished unless `cfg.force`)."""
    run = RunDir(cfg.run_dir)
    models = models or models_to_run(cfg)
    # One writer per run directory; a second one fails here, before touching anything.
    with RunLease(run, command=" ".join(stages)):
        ensure_run_dir(run)
        preflight(cfg, run, stages, models)
        save_config(cfg, run)
        return _run(cfg, run, stages, models)


def preflight(cfg: Config, run: RunDir, stages: tuple[str, ...], models: list[str]) -> None:
    """Refuse before anything runs if a finished stage of this run directory was made under a
    different config and is not being redone: its outputs, and config.yaml, would disagree."""
    redone = set()
    if cfg.force:
        redone = {s for s in stages if s in ("prepare", "semantics")}
        redone |= {f"{k}/{m}" for k in ("train", "eval") if (k == "train" and "train" in stages)
                   or (k == "eval" and "evaluate" in stages) for m in models}
    done = ["prepare", "semantics", *[f"{k}/{m}" for k in ("train", "eval") for m in models]]
    for stage in done:
        if stage not in redone and run.is_done(stage):
            check_unchanged(cfg, run, stage)


def _run(cfg: Config, run: RunDir, stages: tuple[str, ...], models: list[str]) -> PipelineResult:
    result = PipelineResult(run_dir=run.uri)
    t_start = time.perf_counter()
    with PeakRSS() as peak, ray_session(cfg.ray):
        for stage in STAGES:
            if stage not in stages:
                continue
            if stage == "semantics" and not FEATURE_MODELS.intersection(models):
                result.skipped[stage] = "no model needs semantic features"
                continue
            fn = stage_function(stage)
            targets = models if stage in ("train", "evaluate") else [None]
            for model in targets:
                key = f"{stage}/{model}" if model else stage
                t0 = time.perf_counter()
                log.info("stage %s: start", key)
                out = fn(cfg, run, model) if model else fn(cfg, run)
                result.timings[key] = time.perf_counter() - t0
                result.outputs[key] = out
                log.info("stage %s: done in %.1fs", key, result.timings[key])
    result.metrics = collect_metrics(run, models)
    if result.metrics:
        from semacdr_dist.evaluate.report import compare

        compare([run.uri], run.uri)  # compare.md + NDCG@K and cold/warm plots, every model side by side
        result.report = run.uri_of("compare.md")
    # The figures name the machine they were measured on (CPU, flags, cores, dtype choice).
    result.machine = machine_summary()
    result.machine["llm_dtype"], _ = resolve_dtype(cfg.llm.dtype, cfg.llm.use_gpu)
    result.machine["train_precision"], _ = resolve_precision(cfg.train.precision, cfg.train.use_gpu)
    result.wall_seconds = time.perf_counter() - t_start
    result.peak_tree_rss_gib = peak.gib
    run.write_json("pipeline.json", {
        "timings": result.timings, "skipped": result.skipped, "metrics": result.metrics,
        "wall_seconds": result.wall_seconds, "peak_tree_rss_gib": result.peak_tree_rss_gib,
        "machine": result.machine,
    })
    return result


def collect_metrics(run: RunDir, models: list[str], split: str = "test") -> dict[str, dict[str, float]]:
    """The headline metrics of each evaluated model (eval/<model>/metrics.json)."""
    table: dict[str, dict[str, float]] = {}
    for m in models:
        if not run.exists("eval", m, "metrics.json"):
            continue
        metrics = run.read_json(f"eval/{m}/metrics.json")
        flat = metrics.get("metrics", metrics)
        table[m] = {k: v for k, v in flat.items() if isinstance(v, int | float) and k.startswith(f"{split}/")}
    return table


def summary_table(result: PipelineResult, split: str = "test") -> str:
    """Markdown: stage timings, then models × headline metrics (overall and cold-start)."""
    lines = []
    if result.machine:
        m = result.machine
        lines += [f"Measured on {m['describe']} (LLM dtype {m.get('llm_dtype')}, training "
                  f"{m.get('train_precision')}): {result.wall_seconds:.0f} s wall, peak RSS "
                  f"{result.peak_tree_rss_gib:.2f} GiB for the whole process tree.", ""]
    lines += ["| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in result.timings.items()]
    lines += [f"| {k} | skipped: {v} |" for k, v in result.skipped.items()]
    rejected = (result.outputs.get("prepare") or {}).get("rejected") or {}
    if rejected.get("total"):  # bad input rows set aside (data.on_bad_rows=reject): say so here too
        rules = ", ".join(f"{n} {rule}" for rule, n in sorted(rejected.get("by_rule", {}).items()))
        lines += ["", f"prepare rejected {rejected['total']} input rows ({rules}): see "
                      f"{result.run_dir}/rejected/ and stats.json"]
    if result.metrics:
        cols = [f"{split}/{m}" for m in SUMMARY_METRICS] + [f"{split}/cold/{m}" for m in SUMMARY_METRICS[:1]]
        lines += ["", "| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for model, row in result.metrics.items():
            cells = [f"{row[c]:.4f}" if c in row else "–" for c in cols]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
