"""Every model through the shared API: shapes, the gate, training on tiny batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_testkit import make_batch, make_rows, small_cfg

from semacdr_dist.data.batch import collate_rows
from semacdr_dist.model import MODELS, build_model
from semacdr_dist.model.config import ModelConfig

TRAINED = ["semacdr", "sasrec", "sasrec_text", "llm4cdsr"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shapes_and_inner_product_scores(name, catalog, features):
    model = build_model(small_cfg(name), catalog, features).eval()
    batch = make_batch(catalog, 10)
    if name == "pop":
        model.fit([batch])
    user, items = model.user_vectors(batch), model.item_vectors()
    assert user.shape[0] == 10 and items.shape[0] == catalog.n_items and user.shape[1] == items.shape[1]
    full = model.full_sort_predict(batch)
    assert full.shape == (10, catalog.n_items) and torch.isfinite(full).all()
    torch.testing.assert_close(full, user @ items.T)
    some = torch.tensor([3, 70, 5, 119])
    torch.testing.assert_close(model.predict(batch, some), full[:, some], rtol=1e-5, atol=1e-5)


def test_semacdr_gate_with_an_empty_target_thread(catalog, features):
    model = build_model(small_cfg("semacdr"), catalog, features).eval()
    batch = make_batch(catalog, 8)
    cold = torch.tensor([i % 4 == 3 for i in range(8)])  # rows with no target-domain history
    _, extras = model.encode_user(batch)
    w, lengths = extras["gate_weights"], extras["thread_lengths"]
    assert torch.equal(lengths[:, 1] == 0, cold)
    torch.testing.assert_close(w.sum(1), torch.ones(8))
    assert (w[cold, 1] == 0).all()  # the empty target thread gets no weight
    assert (w[cold][:, [0, 2]].sum(1) > 0.999).all()  # source + mixed carry the cold users
    assert (w[~cold] > 0).all()
    _, logs = model.calculate_loss(batch)
    assert {"gate/source", "gate/target", "gate/mixed", "gate_cold/target", "loss/contrastive"} <= set(logs)
    assert logs["gate_cold/target"] == 0.0
    # A user with no history at all gets a finite vector (uniform weights over zero threads).
    empty = {k: v.clone() for k, v in batch.items()}
    empty["history"][0], empty["history_domain"][0] = -1, -1
    assert torch.isfinite(model.user_vectors(empty)).all()


def test_gate_depends_on_target_history_length(catalog, features):
    """The adaptive gate sees how long the target thread is (a learned function of it)."""
    model = build_model(small_cfg("semacdr"), catalog, features).eval()
    vectors = torch.randn(1, 3, 32).repeat(2, 1, 1)
    lengths = torch.tensor([[3, 1, 4], [3, 9, 12]])
    _, w = model.gate(vectors, lengths)
    assert not torch.allclose(w[0], w[1])
    mean = build_model(small_cfg("semacdr", gate="mean"), catalog, features).eval()
    _, w = mean.gate(vectors, torch.tensor([[3, 0, 3], [3, 1, 4]]))
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.0, 0.5], [1 / 3, 1 / 3, 1 / 3]]))


def _train(model, batch, steps: int, lr: float = 1e-2) -> list[float]:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss, _ = model.calculate_loss(batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("loss", ["ce", "sampled", "bce"])
@pytest.mark.parametrize("name", TRAINED)
def test_each_loss_decreases(name, loss, catalog, features):
    torch.manual_seed(0)
    model = build_model(small_cfg(name, loss=loss), catalog, features)
    batch = make_batch(catalog, 32, seed=1)
    losses = _train(model, batch, 25)
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3]), losses


@pytest.mark.parametrize("name", TRAINED)
def test_overfits_64_sequences(name, catalog, features):
    torch.manual_seed(0)
    model = build_model(small_cfg(name), catalog, features)
    batch = make_batch(catalog, 64, seed=2)
    _train(model, batch, 120)
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
    # Rank inside the target domain (the evaluation protocol of CDSR).
    other = torch.from_numpy(catalog.item_domain).long()[None] != batch["target_domain"][:, None]
    top1 = scores.masked_fill(other, float("-inf")).argmax(1)
    hr1 = (top1 == batch["target"]).float().mean().item()
    assert hr1 >= 0.95, hr1


def test_missing_features_fail_with_a_clear_error(catalog):
    with pytest.raises(ValueError, match="needs feature views"):
        build_model(small_cfg("semacdr"), catalog, None)
    with pytest.raises(ValueError, match="expected one of"):
        ModelConfig(name="semacdr", fusion="mean")


@pytest.mark.parametrize("fusion", ["sum", "concat", "attention"])
def test_fusions_and_separate_encoders_train(fusion, catalog, features):
    torch.manual_seed(0)
    cfg = small_cfg("semacdr", fusion=fusion, share_thread_encoders=False, cross_domain_pairs=True,
                    cross_domain_threshold=0.3)
    model = build_model(cfg, catalog, features)
    losses = _train(model, make_batch(catalog, 32, seed=3), 15)
    assert losses[-1] < losses[0]


def test_popularity_counts_train_targets_per_domain(catalog):
    model = build_model(small_cfg("pop"), catalog, None)
    assert not model.trainable
    rows = make_rows(catalog, 40, seed=4)
    model.fit([collate_rows(rows[:20], 12, catalog.domains), collate_rows(rows[20:], 12, catalog.domains)])
    counts = np.bincount([r["target"] for r in rows], minlength=catalog.n_items)
    batch = collate_rows(rows[:4], 12, catalog.domains)
    scores = model.full_sort_predict(batch)
    for i in range(4):
        d = int(batch["target_domain"][i])
        ids = catalog.domain_items(d)
        # Target-domain items are ordered by count, and all score above every other domain.
        s = scores[i, ids].numpy()
        assert (np.diff(s[np.argsort(counts[ids], kind="stable")]) >= 0).all()
        assert s.min() > scores[i, catalog.domain_items(1 - d)].max()
    with pytest.raises(RuntimeError, match="fit"):
        model.calculate_loss(batch)


@pytest.mark.parametrize("gate", ["adaptive", "mean"])
@pytest.mark.parametrize("name", TRAINED)
def test_every_parameter_gets_a_gradient(name, gate, catalog, features):
    """No unused parameters: DDP and DeepSpeed ZeRO would fail (or hang) on them."""
    model = build_model(small_cfg(name, gate=gate), catalog, features)
    model.calculate_loss(make_batch(catalog, 16))[0].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", TRAINED)
def test_histories_longer_than_max_len_are_truncated_to_the_most_recent(name, catalog, features):
    model = build_model(small_cfg(name, max_len=6), catalog, features).eval()
    batch = make_batch(catalog, 8, max_len=12)
    short = {k: (v[:, -6:] if v.dim() == 2 else v) for k, v in batch.items()}
    torch.testing.assert_close(model.user_vectors(batch), model.user_vectors(short))


@pytest.mark.parametrize("name", TRAINED)
def test_batch_width_changes_cost_not_outputs(name, catalog, features):
    """Collate pads to the batch's longest history; extra left padding changes nothing."""
    model = build_model(small_cfg(name), catalog, features).eval()
    rows = make_rows(catalog, 8, max_hist=5)
    batch = collate_rows(rows, 12, catalog.domains)
    assert batch["history"].shape[1] == max(len(r["history"]) for r in rows) <= 5
    wide = {k: v for k, v in batch.items()}
    pad = torch.full((8, 7), -1, dtype=torch.int64)
    wide["history"] = torch.cat([pad, batch["history"]], 1)
    wide["history_domain"] = torch.cat([pad, batch["history_domain"]], 1)
    torch.testing.assert_close(model.user_vectors(batch), model.user_vectors(wide), rtol=1e-5, atol=1e-5)


def test_pca_centres_and_whitens():
    from semacdr_dist.model.item_tower import pca

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12)) * np.arange(1, 13) + 5.0
    z = pca(x, 4, whiten=True)
    assert z.shape == (200, 4)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(0, ddof=1), 1.0, rtol=1e-4)
    plain = pca(x, 4)
    assert plain.std(0, ddof=1)[0] > plain.std(0, ddof=1)[-1]  # variance ordered, not whitened


def test_semacdr_pca_views_and_id_text_alignment(catalog, features):
    cfg = small_cfg("semacdr", view_pca_dim=8, view_whiten=True, id_text_weight=0.5)
    model = build_model(cfg, catalog, features)
    assert model.item_tower.feat_content.shape == (catalog.n_items, 8)
    loss, logs = model.calculate_loss(make_batch(catalog, 16))
    assert "loss/id_text" in logs and logs["loss/id_text"] > 0
    loss.backward()
    assert model.item_tower.id_emb.weight.grad is not None
    assert {"gate/source", "gate/target", "gate/mixed"} <= set(logs)
