"""End-to-end on vectors: evaluate_vectors (Ray actors) equals brute force; report files and plots."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from _synthetic import DOMAINS, brute_force_topk, corpus

from semacdr_dist.evaluate.config import EvalConfig
from semacdr_dist.evaluate.metrics import rank_metrics, target_ranks
from semacdr_dist.evaluate.report import compare, write_eval_report
from semacdr_dist.evaluate.stage import evaluate_vectors, vectors_result
from semacdr_dist.rundir import RunDir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CFG = EvalConfig(num_shards=2, shard_num_cpus=0.5, bootstrap_samples=200, query_batch_size=128)


@pytest.fixture(scope="module")
def vectors_metrics(ray_local):
    items, item_domain, queries, targets, target_domain, histories = corpus(n_items=2000, n_queries=400, seed=1)
    # queries near their target make the numbers non-trivial
    queries = queries + 2 * items[targets]
    metrics = evaluate_vectors(items, item_domain, queries, targets, target_domain, histories, CFG, DOMAINS)
    return (items, item_domain, queries, targets, target_domain, histories), metrics


def test_evaluate_vectors_matches_brute_force(vectors_metrics):
    (items, item_domain, queries, targets, target_domain, histories), m = vectors_metrics
    _, ref_ids = brute_force_topk(items, item_domain, queries, target_domain, histories, 50, "target_domain", True)
    ranks = target_ranks(ref_ids, targets)
    for name, v in rank_metrics(ranks, CFG.ks).items():
        assert m[f"test/{name}"] == pytest.approx(v), name
    food = target_domain == 0
    assert m["test/food/ndcg@10"] == pytest.approx(rank_metrics(ranks[food], [10])["ndcg@10"])
    in_dom = (item_domain[np.maximum(histories, 0)] == target_domain[:, None]) & (histories >= 0)
    cold = in_dom.sum(1) <= 1
    assert m["test/cold/n"] == cold.sum() and m["test/warm/n"] == (~cold).sum()
    assert m["test/cold/hr@20"] == pytest.approx(rank_metrics(ranks[cold], [20])["hr@20"])
    assert m["test/target_in_history"] == (histories == targets[:, None]).any(1).sum()
    assert 0 < m["test/ndcg@10"] < 1 and m["test/sampled/ndcg@10"] >= m["test/ndcg@10"]
    assert m["test/sampled/n"] == len(targets)


def test_evaluate_vectors_rejects_wrong_domain():
    items, item_domain, queries, targets, target_domain, histories = corpus(n_items=300, n_queries=20)
    wrong = (target_domain + 1) % 3
    with pytest.raises(ValueError, match="example 0: target"):
        evaluate_vectors(items, item_domain, queries, targets, wrong, histories, CFG, DOMAINS)


def _png_ok(data: bytes) -> None:
    import io

    import matplotlib.image as mpimg

    assert data.startswith(PNG_MAGIC) and len(data) > 2000
    img = mpimg.imread(io.BytesIO(data), format="png")
    assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0  # not blank


def test_report_and_compare(tmp_path, vectors_metrics):
    _, m = vectors_metrics
    runs = []
    for name, scale in (("run_a", 1.0), ("run_b", 0.5)):
        run = RunDir(tmp_path / name)
        for model in ("semacdr", "sasrec"):
            mm = {k: (v * scale if isinstance(v, float) else v) for k, v in m.items()}
            res = vectors_result(model, mm, CFG, DOMAINS, ["test"])
            paths = write_eval_report(run, model, res)
            for p in paths.values():
                assert (tmp_path / name / "eval" / model / p.rsplit("/", 1)[1]).stat().st_size > 0
        runs.append(str(tmp_path / name))
    md = (tmp_path / "run_a/eval/semacdr/report.md").read_text()
    assert "history items excluded" in md and "| food |" in md and "| cold |" in md and "sampled negatives" in md
    assert json.loads((tmp_path / "run_a/eval/semacdr/metrics.json").read_text())["metrics"]["test/ndcg@10"] == pytest.approx(m["test/ndcg@10"])
    _png_ok((tmp_path / "run_a/eval/semacdr/ndcg_at_k.png").read_bytes())
    _png_ok((tmp_path / "run_a/eval/semacdr/cold_warm.png").read_bytes())

    out = compare(runs, str(tmp_path / "cmp"))
    assert out["labels"] == ["run_a:sasrec", "run_a:semacdr", "run_b:sasrec", "run_b:semacdr"]
    cmp_md = (tmp_path / "cmp/compare.md").read_text()
    assert "run_b:semacdr" in cmp_md and "ndcg@10" in cmp_md
    _png_ok((tmp_path / "cmp/ndcg_at_k.png").read_bytes())
    _png_ok((tmp_path / "cmp/cold_warm.png").read_bytes())
    one = compare([str(tmp_path / "run_a/eval/semacdr/metrics.json")], str(tmp_path / "cmp1"))
    assert one["labels"] == ["semacdr"]
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        compare([str(tmp_path / "cmp")], str(tmp_path / "cmp2"))


def test_all_candidates_keep_history(ray_local):
    items, item_domain, queries, targets, target_domain, histories = corpus(n_items=500, n_queries=50, seed=4)
    cfg = replace(CFG, candidates="all", exclude_history=False, sampled_negatives=0, bootstrap_samples=0)
    m = evaluate_vectors(items, item_domain, queries, targets, target_domain, histories, cfg, DOMAINS, split="valid")
    _, ref_ids = brute_force_topk(items, item_domain, queries, target_domain, histories, 50, "all", False)
    assert m["valid/mrr@50"] == pytest.approx(rank_metrics(target_ranks(ref_ids, targets), [50])["mrr@50"])
    assert not any("sampled" in k or "ci95" in k for k in m)


def test_approximate_index_reports_recall_against_exact(ray_local):
    items, item_domain, queries, targets, target_domain, histories = corpus(n_items=3000, dim=16, n_queries=100, seed=2)
    cfg = replace(CFG, index_type="hnsw", hnsw_m=16, hnsw_ef_search=64, recall_queries=60, bootstrap_samples=0, sampled_negatives=0)
    m = evaluate_vectors(items, item_domain, queries, targets, target_domain, histories, cfg, DOMAINS)
    for k in cfg.ks:
        assert 0.5 < m[f"test/recall@{k}_vs_exact"] <= 1.0
    res = vectors_result("hnsw", m, cfg, DOMAINS, ["test"])
    from semacdr_dist.evaluate.report import markdown_report

    assert "recall@10_vs_exact" in markdown_report(res) and "index hnsw" in markdown_report(res)


def test_empty_group_has_count_but_no_numbers(ray_local):
    items, item_domain, queries, targets, target_domain, histories = corpus(n_items=300, n_queries=30, seed=6)
    keep = target_domain != 2  # no "books" examples
    cfg = replace(CFG, bootstrap_samples=0, sampled_negatives=0)
    m = evaluate_vectors(items, item_domain, queries[keep], targets[keep], target_domain[keep], histories[keep], cfg, DOMAINS)
    assert m["test/books/n"] == 0 and "test/books/ndcg@10" not in m
    assert json.loads(json.dumps(m, allow_nan=False))  # strict JSON
