"""One ranking protocol: validation during training (train/scoring, full score matrix) and
test evaluation (evaluate stage, sharded FAISS on Ray actors) give the same top-K lists,
the same ranks and the same metrics on the same inputs, ties included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _synthetic import DOMAINS, corpus

from semacdr_dist.evaluate.config import EvalConfig
from semacdr_dist.evaluate.metrics import rank_metrics, target_ranks
from semacdr_dist.evaluate.sharded import ShardedIndex
from semacdr_dist.evaluate.stage import evaluate_vectors
from semacdr_dist.train.scoring import K, full_sort_topk, metrics_from_sums, score_batches


class _FixedScores(torch.nn.Module):
    """A "model" whose user vectors are given: full_sort_predict = queries[rows] @ items.T."""

    def __init__(self, queries: np.ndarray, items: np.ndarray):
        super().__init__()
        self.queries, self.items = torch.from_numpy(queries), torch.from_numpy(items)

    def full_sort_predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.queries[batch["row"]] @ self.items.T


def test_validation_and_evaluation_rank_alike(ray_local):
    # integer vectors: exact float32 scores with many ties, the case tie-breaking decides
    items, item_domain, queries, targets, target_domain, histories = corpus(n_items=600, n_queries=200)
    histories[::7, -1] = targets[::7]  # a target already in the history is a miss on both paths
    batch = {"row": torch.arange(len(queries)), "target": torch.from_numpy(targets),
             "target_domain": torch.from_numpy(target_domain), "history": torch.from_numpy(histories)}
    scores = torch.from_numpy(queries) @ torch.from_numpy(items).T
    valid_ids = full_sort_topk(scores, batch, torch.from_numpy(item_domain), K).numpy()
    # the inputs exercise the boundary: the K-th candidate ties the next one in some rows
    kth = np.take_along_axis(scores.numpy(), valid_ids[:, K - 1 : K], 1)[:, 0]
    same_domain = item_domain[None, :] == target_domain[:, None]
    assert ((scores.numpy() == kth[:, None]) & same_domain).sum(1).max() > 1

    cfg = EvalConfig(num_shards=2, shard_num_cpus=0.5, ks=[K], bootstrap_samples=0, sampled_negatives=0,
                     recall_queries=0, query_batch_size=64)
    with ShardedIndex.build(items, item_domain, cfg, len(DOMAINS)) as index:
        _, eval_ids = index.search(queries, target_domain, K, histories)
        evaluated = evaluate_vectors(items, item_domain, queries, targets, target_domain, histories, cfg,
                                     DOMAINS, index=index)
    np.testing.assert_array_equal(valid_ids, eval_ids)
    ranks = target_ranks(eval_ids, targets)
    np.testing.assert_array_equal(target_ranks(valid_ids, targets), ranks)
    assert (ranks[::7] == 0).all() and (ranks > 0).sum() >= 10  # misses and hits both present

    validated = metrics_from_sums(score_batches(_FixedScores(queries, items), [batch],
                                                torch.from_numpy(item_domain)), prefix="test/")
    assert validated["test/count"] == len(targets)
    reference = rank_metrics(ranks, [K])
    for name in (f"hr@{K}", f"ndcg@{K}", f"mrr@{K}"):
        assert validated[f"test/{name}"] == pytest.approx(evaluated[f"test/{name}"], abs=1e-12), name
        assert evaluated[f"test/{name}"] == pytest.approx(reference[name], abs=1e-12), name
