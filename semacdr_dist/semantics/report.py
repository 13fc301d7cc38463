"""The stage report's view statistics: counts, fallbacks, faithfulness distribution."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc

from semacdr_dist.rundir import RunDir
from semacdr_dist.semantics.views import read_views

_QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
_BINS = np.linspace(-0.2, 1.0, 13)


def faithfulness_summary(run: RunDir, model: str, shas: dict[str, str]) -> dict:
    """Per view of the current prompts: rows, fallbacks, tokens, faithfulness quantiles + histogram."""
    t = read_views(run, model, shas, ["item_id", "view", "fallback", "faithfulness", "generated_tokens"])
    per_view = {}
    for view in shas:
        v = t.filter(pc.equal(t["view"], view))
        scores = v["faithfulness"].to_numpy(zero_copy_only=False).astype(np.float64)
        scores = scores[np.isfinite(scores)]
        fb = v["fallback"].to_numpy(zero_copy_only=False).astype(bool)
        gen = scores if not fb.any() else v.filter(pc.invert(v["fallback"]))["faithfulness"].to_numpy(zero_copy_only=False)
        gen = np.asarray(gen, np.float64)
        gen = gen[np.isfinite(gen)]
        entry = {
            "rows": v.num_rows,
            "fallbacks": int(fb.sum()),
            "fallback_rate": float(fb.mean()) if fb.size else 0.0,
            "generated_tokens": int(pc.sum(v["generated_tokens"]).as_py() or 0),
            "faithfulness": _dist(scores),
            "faithfulness_generated_only": _dist(gen),
        }
        per_view[view] = entry
    n_ids = len(np.unique(t["item_id"].to_numpy())) if t.num_rows else 0
    return {"views": t.num_rows, "items_with_views": n_ids, "per_view": {model: per_view}}


def _dist(x: np.ndarray) -> dict:
    if x.size == 0:
        return {"n": 0}
    qs = np.quantile(x, _QUANTILES)
    hist, _ = np.histogram(np.clip(x, _BINS[0], _BINS[-1]), bins=_BINS)
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        **{f"p{int(q * 100)}": float(v) for q, v in zip(_QUANTILES, qs, strict=True)},
        "histogram": {"edges": [round(float(e), 2) for e in _BINS], "counts": hist.tolist()},
    }
