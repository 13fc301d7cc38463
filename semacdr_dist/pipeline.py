"""The pipeline: prepare → semantics → train → evaluate over one run directory.

The one place that composes: it takes the whole :class:`Config` and hands each stage
only its part (:func:`prepare_config`, :func:`semantics_config`, :func:`train_config`,
:func:`evaluate_config`),
so a stage never sees, or imports, the top-level config. Each stage is a plain function
``run_<stage>(part, run, ...)`` in its package; this module orders them, times them and
writes the summary.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from semacdr_dist.config import Config, model_configs
from semacdr_dist.data.config import PrepareStageConfig
from semacdr_dist.hardware import machine_summary, resolve_dtype, resolve_precision
from semacdr_dist.lease import RunLease
from semacdr_dist.manifest import check_unchanged, ensure_run_dir
from semacdr_dist.profiling import PeakRSS
from semacdr_dist.rundir import RunDir
from semacdr_dist.runtime import ray_session
from semacdr_dist.semantics.config import SemanticsStageConfig
from semacdr_dist.train.config import TrainStageConfig

if TYPE_CHECKING:
    from semacdr_dist.evaluate.stage import EvaluateStageConfig

log = logging.getLogger(__name__)

STAGES = ("prepare", "semantics", "train", "evaluate")
# Models whose item tower reads the semantic features (the others need no LLM stage).
FEATURE_MODELS = {"semacdr", "sasrec_text", "llm4cdsr"}
SUMMARY_METRICS = ("ndcg@10", "hr@10", "mrr@10")


def prepare_config(cfg: Config) -> PrepareStageConfig:
    """The prepare stage's part of ``cfg``."""
    return PrepareStageConfig(data=cfg.data, seed=cfg.seed, force=cfg.force)


def semantics_config(cfg: Config) -> SemanticsStageConfig:
    """The semantics stage's part of ``cfg``."""
    return SemanticsStageConfig(models_dir=cfg.models_dir, llm=cfg.llm, encoder=cfg.encoder, seed=cfg.seed,
                                force=cfg.force)


def train_config(cfg: Config, model: str) -> TrainStageConfig:
    """The train stage's part of ``cfg`` for ``model`` (``cfg.model``, or a baseline's preset)."""
    return TrainStageConfig(model=model_configs(cfg, [model])[model], train=cfg.train, seed=cfg.seed,
                            force=cfg.force)


def evaluate_config(cfg: Config) -> EvaluateStageConfig:
    """The evaluate stage's part of ``cfg``."""
    from semacdr_dist.evaluate.stage import EvaluateStageConfig  # lazy: FAISS, pyarrow

    return EvaluateStageConfig(evaluate=cfg.evaluate, force=cfg.force)


def stage_part(cfg: Config, stage: str) -> Any:
    """What the stage (``prepare``, ``semantics``, ``train/<model>``, ``eval/<model>``) is handed."""
    kind, _, model = stage.partition("/")
    if kind == "semantics":
        return semantics_config(cfg)
    if kind == "train":
        return train_config(cfg, model)
    if kind in ("eval", "evaluate"):
        return evaluate_config(cfg)
    if kind == "prepare":
        return prepare_config(cfg)
    raise ValueError(f"unknown stage {stage!r}")


def run_stage(cfg: Config, run: RunDir, stage: str, model: str | None = None) -> dict:
    """Run one stage (one model's, for train and evaluate) on its part of ``cfg``."""
    if stage == "prepare":
        from semacdr_dist.data.prepare import run_prepare

        return run_prepare(prepare_config(cfg), run)
    if stage == "semantics":
        from semacdr_dist.semantics.stage import run_semantics

        return run_semantics(semantics_config(cfg), run)
    if stage == "train":
        from semacdr_dist.train.stage import run_train

        return run_train(train_config(cfg, model), run)
    if stage == "evaluate":
        from semacdr_dist.evaluate.stage import run_evaluate

        return run_evaluate(evaluate_config(cfg), run, model)
    raise ValueError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")


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
    return list(model_configs(cfg))


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
    different config and is not being redone: its outputs, and config.yaml, would disagree.
    Each stage is compared on the part it is handed (as the stage itself will)."""
    redone = set()
    if cfg.force:
        redone = {s for s in stages if s in ("prepare", "semantics")}
        redone |= {f"{k}/{m}" for k in ("train", "eval") if (k == "train" and "train" in stages)
                   or (k == "eval" and "evaluate" in stages) for m in models}
    done = ["prepare", "semantics", *[f"{k}/{m}" for k in ("train", "eval") for m in models]]
    for stage in done:
        if stage not in redone and run.is_done(stage):
            check_unchanged(stage_part(cfg, stage), run, stage)


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
            targets = models if stage in ("train", "evaluate") else [None]
            for model in targets:
                key = f"{stage}/{model}" if model else stage
                t0 = time.perf_counter()
                log.info("stage %s: start", key)
                out = run_stage(cfg, run, stage, model)
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
