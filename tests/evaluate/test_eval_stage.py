"""run_evaluate on a real run directory and a real model export (SASRec, untrained weights):
query vectors via Ray Data, sharded search via Ray actors, equal to the model's full_sort_predict."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from semacdr_dist.config import load_config
from semacdr_dist.data.schemas import ITEMS, SEQUENCES
from semacdr_dist.evaluate.config import EvalConfig
from semacdr_dist.evaluate.metrics import rank_metrics, target_ranks
from semacdr_dist.evaluate.stage import run_evaluate
from semacdr_dist.pipeline import evaluate_config
from semacdr_dist.rundir import RunDir

DOMAINS = ["food", "kitchen"]
N_ITEMS = 240


def _write_run(run: RunDir, rng: np.random.Generator) -> None:
    item_domain = rng.integers(0, 2, N_ITEMS)
    items = pa.table(
        {
            "item_id": np.arange(N_ITEMS),
            "domain": [DOMAINS[d] for d in item_domain],
            "raw_id": [f"r{i}" for i in range(N_ITEMS)],
            "title": [f"item {i}" for i in range(N_ITEMS)],
            "categories": [[] for _ in range(N_ITEMS)],
            "brand": [None] * N_ITEMS,
            "description": [None] * N_ITEMS,
        },
        schema=ITEMS,
    )
    run.write_table("items/part-00000.parquet", items)
    run.write_json("stats.json", {"domains": DOMAINS})
    for split, n in (("valid", 70), ("test", 90)):
        rows = []
        for u in range(n):
            hist = rng.integers(0, N_ITEMS, rng.integers(1, 15))
            d = int(rng.integers(0, 2))
            target = int(rng.choice(np.flatnonzero(item_domain == d)))
            rows.append(
                {"user_id": u, "split": split, "target_domain": DOMAINS[d], "history": hist.tolist(),
                 "history_domain": item_domain[hist].astype(np.int8).tolist(), "target": target}
            )
        run.write_table(f"sequences/{split}/part-00000.parquet", pa.Table.from_pylist(rows, schema=SEQUENCES))


def test_run_evaluate_equals_full_sort_predict(ray_local, tmp_path):
    from semacdr_dist.data.batch import collate_rows
    from semacdr_dist.data.catalog import load_catalog
    from semacdr_dist.model import ModelConfig, build_model
    from semacdr_dist.model.export import load_export, save_export

    run = RunDir(tmp_path / "run")
    _write_run(run, np.random.default_rng(0))
    catalog = load_catalog(run)
    mcfg = ModelConfig(name="sasrec", hidden_dim=16, num_heads=2, num_layers=1, max_len=8, views=[])
    save_export(build_model(mcfg, catalog), mcfg, catalog, run.local_path("export", "sasrec"))

    cfg = load_config([f"run_dir={run.uri}"])
    # one split keeps the test fast (each split is one Ray Data run); valid goes the same path
    cfg.evaluate = EvalConfig(num_shards=1, shard_num_cpus=0.5, bootstrap_samples=100, encoder_batch_size=32, splits=["test"])
    result = run_evaluate(evaluate_config(cfg), run, "sasrec")

    model, _ = load_export(run.local_path("export", "sasrec"))
    for split in ("test",):
        table = run.read_table("sequences", split)
        batch = collate_rows(table, mcfg.max_len, DOMAINS)
        import torch

        with torch.no_grad():
            scores = model.full_sort_predict(batch)
        item_domain = torch.as_tensor(catalog.item_domain, dtype=torch.long)
        scores = scores.masked_fill(item_domain[None, :] != batch["target_domain"][:, None], float("-inf"))
        for i, h in enumerate(table["history"].to_pylist()):  # the FULL history is excluded
            scores[i, h] = float("-inf")
        order = torch.argsort(-scores, dim=1, stable=True)[:, :50].numpy()
        ranks = target_ranks(order, table["target"].to_numpy())
        for name, v in rank_metrics(ranks, [1, 5, 10, 20, 50]).items():
            assert result["metrics"][f"{split}/{name}"] == pytest.approx(v, abs=1e-9), (split, name)
        # the trainer's in-process validation scorer follows the same protocol (given the
        # full history: collate wider than the model's max_len, which the model truncates)
        from semacdr_dist.train.scoring import metrics_from_sums, score_batches

        full = collate_rows(table, 64, DOMAINS)
        inproc = metrics_from_sums(score_batches(model, [full], item_domain), prefix=f"{split}/")
        for name in ("hr@10", "ndcg@10", "mrr@10"):
            assert inproc[f"{split}/{name}"] == pytest.approx(result["metrics"][f"{split}/{name}"], abs=1e-9), name

    for f in ("metrics.json", "report.md", "ndcg_at_k.png", "cold_warm.png", "_SUCCESS.json"):
        assert run.exists("eval", "sasrec", f), f
    assert result["settings"]["exclude_history"] is True and len(result["shards"]) == 1
    # finished: read back, not recomputed
    again = run_evaluate(evaluate_config(cfg), run, "sasrec")
    assert again["metrics"] == pytest.approx(result["metrics"], nan_ok=True)
