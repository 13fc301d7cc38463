"""The causal encoder's mask, padding safety and thread splitting."""

from __future__ import annotations

import torch

from semacdr_dist.model.layers import PAD, SequenceEncoder, attention_mask, split_threads


def _encoder() -> SequenceEncoder:
    torch.manual_seed(0)
    return SequenceEncoder(dim=16, layers=2, heads=2, max_len=10, dropout=0.0).eval()


def test_changing_a_later_item_never_changes_an_earlier_output():
    enc = _encoder()
    L = 8
    items = torch.randn(3, L, 16)
    valid = torch.ones(3, L, dtype=torch.bool)
    valid[1, :3] = False  # left padding
    valid[2, :7] = False
    base = enc(items, valid)
    for p in range(3, L):
        changed = items.clone()
        changed[:, p] = torch.randn(3, 16) * 5
        out = enc(changed, valid)
        torch.testing.assert_close(out[:, :p], base[:, :p], rtol=0, atol=1e-6)
        # ... and the mask is not vacuous: position p itself changes wherever it is not padding.
        moved = (out[:, p] - base[:, p]).abs().amax(-1) > 1e-3
        assert torch.equal(moved, valid[:, p])


def test_mask_is_causal_and_padding_safe():
    valid = torch.tensor([[False, False, True, True], [False, False, False, False]])
    m = attention_mask(valid)[:, 0]
    assert m.shape == (2, 4, 4)
    # Row 0, query 3 sees keys 2 and 3 only (not the padding, not the future).
    assert m[0, 3].tolist() == [False, False, True, True]
    assert m[0, 2].tolist() == [False, False, True, False]
    # An all-padding row still has one allowed key per query: no NaN anywhere.
    out = _encoder()(torch.randn(2, 4, 16), valid)
    assert torch.isfinite(out).all()
    assert (out[1] == 0).all() and (out[0, :2] == 0).all()


def test_left_padding_amount_does_not_change_the_user_state():
    enc = _encoder()
    seq = torch.randn(1, 5, 16)
    short = enc.last(seq, torch.ones(1, 5, dtype=torch.bool))
    padded = torch.cat([torch.randn(1, 3, 16), seq], 1)  # garbage under the padding
    valid = torch.tensor([[False] * 3 + [True] * 5])
    torch.testing.assert_close(enc.last(padded, valid), short, rtol=0, atol=1e-6)


def test_split_threads_keeps_order_and_left_pads():
    hist = torch.tensor([[PAD, 1, 50, 2, 51, 3], [PAD, PAD, PAD, 60, 61, 62]])
    hdom = torch.tensor([[PAD, 0, 1, 0, 1, 0], [PAD, PAD, PAD, 1, 1, 1]])
    t = split_threads(hist, hdom, torch.tensor([0, 0]))
    assert t["target"].tolist() == [[PAD, PAD, PAD, 1, 2, 3], [PAD] * 6]
    assert t["source"].tolist() == [[PAD, PAD, PAD, PAD, 50, 51], [PAD, PAD, PAD, 60, 61, 62]]
    assert torch.equal(t["mixed"], hist)


def test_rows_encoded_in_length_groups_match_one_padded_batch():
    """`last` cuts groups of short rows to their own width: the same outputs as the whole batch
    padded to its longest row, and gradients reach every row's items."""
    enc = _encoder()
    L = 10
    lengths = torch.tensor([0, 1, 2, 3, 5, 8, 10, 1, 4, 9])
    items = torch.randn(len(lengths), L, 16, requires_grad=True)
    valid = torch.arange(L)[None] >= (L - lengths)[:, None]  # left padding
    grouped = enc.last(items, valid)
    torch.testing.assert_close(grouped, enc(items, valid)[:, -1], rtol=0, atol=1e-5)
    assert (grouped[0] == 0).all()  # the empty row stays zero
    (grouped * torch.randn_like(grouped)).sum().backward()  # (a plain sum of LayerNorm outputs has no gradient)
    reached = items.grad.abs().sum(-1) > 0
    assert torch.equal(reached, valid)


def test_dropout_keeps_one_minus_p_scaled_and_its_gradient_is_the_same_mask():
    from semacdr_dist.model.layers import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.2)
    x = torch.ones(200_000, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(float(kept.float().mean()) - 0.8) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.8))
    (y * 3).sum().backward()
    # d/dx of x * mask / (1 - p): the same mask and scale, dropped positions get no gradient
    assert torch.allclose(x.grad, 3 * y.detach())
    bf16 = drop(torch.ones(200_000, dtype=torch.bfloat16))  # float32 draws: p is not rounded to bf16
    assert bf16.dtype == torch.bfloat16 and abs(float((bf16 != 0).float().mean()) - 0.8) < 0.005
    drop.eval()
    z = torch.randn(10)
    assert torch.equal(drop(z), z)
    assert torch.equal(Dropout(0.0).train()(z), z)
