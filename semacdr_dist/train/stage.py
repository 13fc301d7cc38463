"""The train stage: `run_train(cfg, run)` with `cfg` a `TrainStageConfig` (model, train, seed, force).

Gradient models train on Ray Train + DeepSpeed (`trainer.build_trainer`), the
popularity baseline is counted in-process; both end with an export of the best
model to `export/<model>/` and `train/<model>/_SUCCESS.json`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from semacdr_dist.manifest import finish_stage, owned_files, replacing, should_skip, verify_inputs
from semacdr_dist.model.config import ModelConfig
from semacdr_dist.rundir import RunDir
from semacdr_dist.train.checkpoint import best_saved_checkpoint, load_params
from semacdr_dist.train.config import TrainConfig, TrainStageConfig
from semacdr_dist.train.state import load_inputs, needs_features, read_metrics

log = logging.getLogger(__name__)


def run_train(cfg: TrainStageConfig, run: RunDir, model_name: str | None = None) -> dict[str, Any]:
    """Train (or fit) `cfg.model` on the run's sequences and export the best model.

    Skipped when `train/<model>/_SUCCESS.json` exists, unless `cfg.force`; with
    `cfg.force` the model's checkpoints and metrics are cleared first. A run
    interrupted earlier resumes from its last checkpoint. `model_name`, if given,
    must be `cfg.model.name` (a baseline comes with its own config: `pipeline.train_config`).
    """
    if model_name is not None and model_name != cfg.model.name:
        raise ValueError(f"run_train was asked for {model_name!r} with the config of {cfg.model.name!r}: "
                         f"hand it the model's own config (semacdr_dist.pipeline.train_config)")
    model_name = cfg.model.name
    stage = f"train/{model_name}"
    if should_skip(cfg, run, stage):  # raises if it was finished under another config
        log.info("train %s: already done (%s), skipping", model_name, run.uri_of(stage, "_SUCCESS.json"))
        return run.read_json(f"{stage}/_SUCCESS.json")
    verify_inputs(run, stage)  # before force=true moves anything: a bad shard costs nothing
    old = owned_files(run, [f"checkpoints/{model_name}", stage, f"export/{model_name}"]) if cfg.force else []
    # force=true: the previous model comes back if the redo fails.
    with replacing(run, old, current=lambda: owned_files(run, [f"checkpoints/{model_name}", stage,
                                                               f"export/{model_name}"])):
        return _train(cfg, run, model_name, stage)


def _train(cfg: TrainStageConfig, run: RunDir, model_name: str, stage: str) -> dict[str, Any]:
    model_cfg = cfg.model
    t0 = time.perf_counter()
    if model_cfg.name == "pop":
        summary = fit_popularity(run, model_cfg)
    else:
        summary = fit_deepspeed(run, model_cfg, cfg.train, seed=cfg.seed)
    summary["seconds"] = time.perf_counter() - t0
    finish_stage(run, stage, cfg, summary)
    log.info("train %s: done in %.1f s: %s", model_name, summary["seconds"], summary.get("best_metrics"))
    return summary


def fit_deepspeed(run: RunDir, model_cfg: ModelConfig, tcfg: TrainConfig, seed: int = 0) -> dict[str, Any]:
    """Ray Train + DeepSpeed fit (resuming if checkpoints exist), then export of the best checkpoint."""
    from semacdr_dist.train.trainer import best_checkpoint, build_trainer

    trainer = build_trainer(run, model_cfg, tcfg, seed=seed)
    try:
        result = trainer.fit()
    except Exception as err:  # Train V2 raises once max_failures is spent; rerunning the stage resumes
        raise RuntimeError(f"training {model_cfg.name} failed (rerun the stage to resume from the last "
                           f"checkpoint): {err}") from err
    if result.error is not None:
        raise RuntimeError(f"training {model_cfg.name} failed: {result.error}") from result.error
    checkpoint, metrics = best_checkpoint(result, tcfg.monitor)
    saved = best_saved_checkpoint(run, model_cfg.name, tcfg.monitor)
    if saved is not None:  # also sees the best of an earlier driver (a killed one, or a carry's)
        import ray.train

        checkpoint, metrics = ray.train.Checkpoint(saved[0]), saved[1]
    with checkpoint.as_directory() as d:
        export_dir = export_from_checkpoint(run, model_cfg, d)
    records = read_metrics(run, model_cfg.name)
    return {
        "model": model_cfg.name,
        "best_checkpoint": checkpoint.path,
        "best_metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "epochs": len(records),
        **convergence(records, tcfg.monitor),
        "export": export_dir,
    }


def convergence(records: list[dict[str, Any]], monitor: str) -> dict[str, Any]:
    """epochs_run, best_epoch (highest `monitor`, earliest on ties) and stopped_by
    (patience | cap) of a run's metrics.jsonl records."""
    scored = [r for r in records if isinstance(r.get(monitor), (int, float)) and r[monitor] >= 0]
    best = max(scored, key=lambda r: (r[monitor], -r["epoch"]), default=None)
    stopped = bool(records and records[-1].get("stopped"))
    return {"epochs_run": len(records), "best_epoch": best["epoch"] if best else None,
            "stopped_by": "patience" if stopped else "cap"}


def export_from_checkpoint(run: RunDir, model_cfg: ModelConfig, checkpoint_dir: str) -> str:
    """Rebuild the model on the driver, load the checkpoint's fp32 parameters, export it."""
    from semacdr_dist.model import build_model

    catalog, features = load_inputs(run, needs_features(model_cfg))
    model = build_model(model_cfg, catalog, features)
    load_params(model, checkpoint_dir)
    return _export(run, model, model_cfg, catalog)


def _export(run: RunDir, model, model_cfg: ModelConfig, catalog) -> str:
    """`save_export` into a local temporary directory, then each file into `export/<model>/`
    through the run directory (so a remote run dir works the same)."""
    import os
    import tempfile

    from semacdr_dist.model.export import save_export

    model.eval()
    run.delete("export", model_cfg.name)
    with tempfile.TemporaryDirectory(prefix="semacdr-export-") as tmp:
        save_export(model, model_cfg, catalog, tmp)
        for name in sorted(os.listdir(tmp)):
            with open(os.path.join(tmp, name), "rb") as f:
                run.write_bytes(f"export/{model_cfg.name}/{name}", f.read())
    return run.uri_of("export", model_cfg.name)


def fit_popularity(run: RunDir, model_cfg: ModelConfig, chunk_rows: int = 8192) -> dict[str, Any]:
    """Count train targets per item in-process (no DeepSpeed), validate exactly, export."""
    from semacdr_dist.data.batch import collate_rows
    from semacdr_dist.model import build_model
    from semacdr_dist.train.scoring import metrics_from_sums, score_batches

    catalog, _ = load_inputs(run, False)
    model = build_model(model_cfg, catalog, None)

    def batches(split: str):
        for _, table in run.iter_tables("sequences", split):
            for start in range(0, table.num_rows, chunk_rows):
                yield collate_rows(table.slice(start, chunk_rows), model_cfg.max_len, catalog.domains)

    t0 = time.perf_counter()
    model.fit(batches("train"))
    import torch

    item_domain = torch.as_tensor(catalog.item_domain, dtype=torch.long)
    metrics = metrics_from_sums(score_batches(model, batches("valid"), item_domain))
    record = {"epoch": 0, "train/seconds": time.perf_counter() - t0, **metrics}
    from semacdr_dist.train.state import append_metrics

    append_metrics(run, model_cfg.name, record)
    export_dir = _export(run, model, model_cfg, catalog)
    # Counting converges in one pass: nothing to stop early.
    return {"model": model_cfg.name, "best_metrics": metrics, "epochs": 1, "epochs_run": 1, "best_epoch": 0,
            "stopped_by": "fit", "export": export_dir}
