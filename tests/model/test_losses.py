"""Losses against hand-computed values and against the full softmax."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from model_testkit import make_batch, small_cfg

from semacdr_dist.model import build_model
from semacdr_dist.model.losses import info_nce, multi_positive_nce, sampled_softmax_loss


def test_info_nce_equals_hand_computed_value():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    p = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    t = 0.5

    def unit(v):
        n = math.hypot(*v)
        return [x / n for x in v]

    A = [unit(r) for r in a.tolist()]
    P = [unit(r) for r in p.tolist()]
    total = 0.0
    for i in range(3):
        logits = [(A[i][0] * P[j][0] + A[i][1] * P[j][1]) / t for j in range(3)]
        total += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    expected = total / 3
    assert abs(info_nce(a, p, t).item() - expected) < 1e-6
    # Closed form: two orthonormal items, t = 1 → each row is -log(e / (e + 1)) = log(1 + 1/e).
    eye = torch.eye(2)
    assert abs(info_nce(eye, eye, 1.0).item() - math.log(1 + 1 / math.e)) < 1e-6


def test_multi_positive_nce_hand_computed_and_zero_without_pairs():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    pos = torch.zeros(3, 3, dtype=torch.bool)
    pos[0, 1] = pos[1, 0] = True
    t = 1.0
    # Row 0 (and symmetrically row 1): logits to rows 1, 2 = [1, 0] → -log(e / (e + 1)).
    expected = -math.log(math.e / (math.e + 1))
    assert abs(multi_positive_nce(z, pos, t).item() - expected) < 1e-6
    assert multi_positive_nce(z, torch.zeros(3, 3, dtype=torch.bool), t).item() == 0.0


def test_sampled_softmax_with_logq_approximates_full_softmax():
    g = torch.Generator().manual_seed(0)
    n, b, d, k = 40, 6, 8, 40000
    items = torch.randn(n, d, generator=g)
    user = torch.randn(b, d, generator=g) * 0.7
    target = torch.randint(0, n, (b,), generator=g)
    full = F.cross_entropy(user @ items.T, target).item()
    # A skewed proposal that rarely draws the items these users score highest.
    q = torch.softmax(-1.5 * items @ user.mean(0), 0)
    neg = torch.multinomial(q, k, replacement=True, generator=g)
    corrected = sampled_softmax_loss(user, items[target], target, items[neg], neg, q[neg].log()).item()
    # Pretending the skewed proposal was uniform (no logQ) is visibly biased.
    uniform = torch.full((k,), -math.log(n))
    biased = sampled_softmax_loss(user, items[target], target, items[neg], neg, uniform).item()
    assert abs(corrected - full) < 0.02 * full
    assert abs(biased - full) > 5 * abs(corrected - full)


def test_model_sampled_loss_matches_its_full_softmax(catalog, features):
    torch.manual_seed(0)
    batch = make_batch(catalog, 16)
    ce = build_model(small_cfg("sasrec", loss="ce", init_std=0.3), catalog, features).eval()
    sampled = build_model(small_cfg("sasrec", loss="sampled", num_negatives=30000, init_std=0.3),
                          catalog, features).eval()
    sampled.load_state_dict(ce.state_dict())
    full, _ = ce.calculate_loss(batch)
    approx, _ = sampled.calculate_loss(batch)
    assert abs(approx.item() - full.item()) < 0.03 * full.item()


def test_full_softmax_masks_other_domains(catalog, features):
    """The CE loss equals a softmax restricted to the target domain's items."""
    model = build_model(small_cfg("sasrec", init_std=0.3), catalog, features).eval()
    batch = make_batch(catalog, 8)
    loss, _ = model.calculate_loss(batch)
    scores = model.full_sort_predict(batch)
    manual = []
    for i in range(8):
        ids = torch.from_numpy(catalog.domain_items(int(batch["target_domain"][i])))
        pos = (ids == batch["target"][i]).nonzero()[0, 0]
        manual.append(-F.log_softmax(scores[i, ids], 0)[pos])
    assert abs(loss.item() - torch.stack(manual).mean().item()) < 1e-5
