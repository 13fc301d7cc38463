"""The synthetic catalog: deterministic by seed, streamed in chunks, with a real cross-domain signal."""

from __future__ import annotations

import numpy as np

from semacdr_dist.data.config import SyntheticConfig
from semacdr_dist.data.schemas import INTERACTIONS, ITEMS
from semacdr_dist.data.synthetic import iter_items, layout, read_synthetic, user_events
from semacdr_dist.data.synthetic_vocab import THEMES

SMALL = SyntheticConfig(n_items=300, n_users=400, n_themes=12, mean_history=10.0, chunk_items=128, chunk_users=150)


def test_deterministic_by_seed():
    a, b, c = read_synthetic(SMALL, 7), read_synthetic(SMALL, 7), read_synthetic(SMALL, 8)
    assert a.items.equals(b.items) and a.interactions.equals(b.interactions)
    assert not a.interactions.equals(c.interactions)
    assert a.items.schema.equals(ITEMS) and a.interactions.schema.equals(INTERACTIONS)
    assert a.items["item_id"].to_pylist() == list(range(300))
    assert a.interactions["user_id"].to_numpy().max() == 399


def test_streams_in_bounded_chunks():
    cfg = SyntheticConfig(n_items=10_000, n_users=10, chunk_items=1_000)
    sizes, first = [], []
    for t in iter_items(cfg, 0):
        sizes.append(t.num_rows)
        first.append(t["item_id"][0].as_py())
    assert max(sizes) == 1_000 and sum(sizes) == 10_000 and first == list(range(0, 10_000, 1_000))


def test_text_shares_theme_words_across_domains():
    out = read_synthetic(SMALL, 0)
    lay = layout(SMALL)
    dom, theme, _ = lay.locate(out.items["item_id"].to_numpy())
    titles = out.items["title"].to_pylist()
    descs = out.items["description"].to_pylist()
    for i in range(out.items.num_rows):
        words = THEMES[theme[i]][1]
        assert any(w.lower() in (titles[i] + " " + descs[i]).lower() for w in words), titles[i]
    assert set(dom.tolist()) == {0, 1}
    assert all(len(c) == 2 for c in out.items["categories"].to_pylist())
    assert len(set(titles)) > 0.9 * len(titles)


def test_cross_domain_theme_overlap_far_above_chance():
    cfg = SyntheticConfig(n_items=2000, n_users=1500, n_themes=20, cold_start_share=0.0)
    ev = user_events(cfg, 0, 0, cfg.n_users, 0)
    n_themes = cfg.n_themes
    counts = np.zeros((cfg.n_users, 2, n_themes))
    np.add.at(counts, (ev["user_id"], ev["domain"], ev["theme"]), 1)
    both = (counts[:, 0].sum(1) >= 3) & (counts[:, 1].sum(1) >= 3)
    assert both.sum() > 300
    same_top = (counts[both, 0].argmax(1) == counts[both, 1].argmax(1)).mean()
    # a random pairing of users' food and kitchen histories gives the chance level
    perm = np.random.default_rng(0).permutation(np.flatnonzero(both))
    chance = (counts[both, 0].argmax(1) == counts[perm, 1].argmax(1)).mean()
    assert same_top > 0.6 and same_top > 5 * chance, (same_top, chance)


def test_cold_start_share_in_target_domain():
    cfg = SyntheticConfig(n_items=1000, n_users=2000, cold_start_share=0.3)
    ev = user_events(cfg, 0, 0, cfg.n_users, 0)
    user, dom = ev["user_id"], ev["domain"]
    last = np.r_[np.flatnonzero(np.diff(user)), len(user) - 1]
    target_hist = np.bincount(user, weights=(dom == 1)) - (dom[last] == 1)
    cold = (target_hist <= 1) & (dom[last] == 1)
    assert 0.3 <= cold.mean() <= 0.45
