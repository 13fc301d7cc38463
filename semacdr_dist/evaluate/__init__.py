"""The evaluate stage: sharded FAISS search on Ray actors, exact metrics, reports.

Owns: the ranking protocol and the metrics (`metrics`: `target_ranks`, `metric_table`,
also used by training's validation), `run_evaluate(EvaluateStageConfig, run, model_name)`
(export/<model>/, sequences/ -> eval/<model>/), `EvalConfig`, the sharded index and the
reports (`compare`, `write_eval_report`).
May import: `data`, `model` (to load an export) and the foundation modules; never the
top-level config.

Public entry points (imported lazily, so `semacdr_dist.config` stays light):
`run_evaluate(cfg, run, model_name)`, `evaluate_vectors(...)`, `ShardedIndex`,
`compare(sources, out_dir)`, `write_eval_report(run, model_name, result)`.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "run_evaluate": "semacdr_dist.evaluate.stage",
    "evaluate_vectors": "semacdr_dist.evaluate.stage",
    "ShardedIndex": "semacdr_dist.evaluate.sharded",
    "compare": "semacdr_dist.evaluate.report",
    "write_eval_report": "semacdr_dist.evaluate.report",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'semacdr_dist.evaluate' has no attribute {name!r}")


__all__ = list(_EXPORTS)
