"""benchmarks/quality.py's table: mean ± sd over seeds, ratios, and the verdict on the targets."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import quality  # noqa: E402


def test_verdicts_say_met_or_by_how_much_short():
    ratios = {"test/food/ndcg@10": 1.2, "test/kitchen/ndcg@10": 1.035, "test/cold/ndcg@10": 1.3, "test/ndcg@10": 2.0}
    lines = quality.target_verdicts(ratios, ["food", "kitchen"])
    assert lines == [
        "food/ndcg@10: 1.200 vs 1.15 — met",
        "kitchen/ndcg@10: 1.035 vs 1.15 — short by 0.115 (10% of the goal)",
        "cold/ndcg@10: 1.300 vs 1.3 — met",
    ]


def test_markdown_table_has_mean_sd_ratios_and_command():
    rows = {"semacdr": [{"test/ndcg@10": 0.3, "test/food/ndcg@10": 0.2}, {"test/ndcg@10": 0.5, "test/food/ndcg@10": 0.4}],
            "sasrec": [{"test/ndcg@10": 0.2, "test/food/ndcg@10": 0.2}, {"test/ndcg@10": 0.2, "test/food/ndcg@10": 0.2}]}
    cols = ["test/ndcg@10", "test/food/ndcg@10"]
    table = {v: {c: dict(zip(("mean", "sd"), quality.mean_sd([r[c] for r in rs]), strict=True)) for c in cols}
             for v, rs in rows.items()}
    ratios = {c: table["semacdr"][c]["mean"] / table["sasrec"][c]["mean"] for c in cols}
    md = quality.markdown({"command": "python benchmarks/quality.py", "data": "food_kitchen", "seeds": [0, 1],
                           "machine": "x86_64, 2 cores", "seconds": 60.0, "columns": cols, "table": table,
                           "ratios": ratios, "domains": ["food"], "runs": rows,
                           "protocol": {"loss": "sampled", "epochs": 1},
                           "train_seconds": {"semacdr": [60.0, 180.0], "sasrec": []}})
    assert "Command: `python benchmarks/quality.py`" in md
    assert "| semacdr | 2 | 0.4000 ± 0.1414 | 0.3000 ± 0.1414 | 2.0 |" in md
    assert "| sasrec | 2 | 0.2000 ± 0.0000 | 0.2000 ± 0.0000 | – |" in md
    assert "Training, every variant: loss sampled, epochs 1." in md
    assert "- test/ndcg@10: 2.000" in md and "food/ndcg@10: 1.500 vs 1.15 — met" in md


def test_run_order_finishes_headline_models_before_ablations_seed_by_seed():
    order = quality.run_order(["semacdr", "sasrec", "semacdr-no_gate", "semacdr-content_only"], [0, 1])
    assert order == [("semacdr", 0), ("semacdr", 1), ("sasrec", 0), ("sasrec", 1),
                     ("semacdr-no_gate", 0), ("semacdr-content_only", 0),
                     ("semacdr-no_gate", 1), ("semacdr-content_only", 1)]
