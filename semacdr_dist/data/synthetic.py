"""The embedded synthetic catalog: N domains of items with realistic text,
drawn from latent themes shared across domains, and users whose mixed
chronological histories follow their theme preferences.

Everything is a deterministic function of (config, seed, chunk index), so the
catalog is generated chunk by chunk (items and users alike) and 10M items never
sit in one process at once. Items are laid out domain-major, theme-minor: item
``i`` belongs to the (domain, theme) block that contains it, so a user chunk
can sample items of a block without ever materialising the item table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from semacdr_dist.data.config import SyntheticConfig
from semacdr_dist.data.readers.base import (
    ROW_COL,
    Chunk,
    ReaderOutput,
    collect,
    interactions_table,
    items_table,
)
from semacdr_dist.data.schemas import ITEMS
from semacdr_dist.data.synthetic_vocab import DOMAINS, THEMES

log = logging.getLogger(__name__)

ITEMS_FILE = "synthetic:items"
INTERACTIONS_FILE = "synthetic:interactions"
T0 = 1_600_000_000  # first timestamp (seconds): Sept 2020
DAY = 86_400


@dataclass(frozen=True)
class Layout:
    """Where the (domain, theme) blocks of items lie in the dense id range."""

    domains: list[str]
    templates: list[str]  # DOMAINS key giving each domain its vocabulary
    block_start: np.ndarray  # [D, T] first item id of each block
    block_size: np.ndarray  # [D, T]

    @property
    def n_items(self) -> int:
        return int(self.block_size.sum())

    def locate(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(domain index, theme index, rank in block) of each item id."""
        flat_start = self.block_start.ravel()
        block = np.searchsorted(flat_start, item_ids, side="right") - 1
        n_themes = self.block_start.shape[1]
        return block // n_themes, block % n_themes, item_ids - flat_start[block]


def layout(cfg: SyntheticConfig) -> Layout:
    n_dom, n_themes = cfg.n_domains, cfg.n_themes
    if n_dom < 1 or not 1 <= n_themes <= len(THEMES):
        raise ValueError(f"synthetic: need n_domains >= 1 and 1 <= n_themes <= {len(THEMES)}")
    if cfg.n_items < n_dom * n_themes:
        raise ValueError(
            f"synthetic: n_items={cfg.n_items} < n_domains*n_themes={n_dom * n_themes}; "
            "raise data.synthetic.n_items or lower data.synthetic.n_themes"
        )
    names = list(cfg.domain_names) or list(DOMAINS)
    domains = [names[d % len(names)] + (f"_{d // len(names) + 1}" if d >= len(names) else "") for d in range(n_dom)]
    keys = list(DOMAINS)
    templates = [n if n in DOMAINS else keys[d % len(keys)] for d, n in enumerate(domains)]
    per_dom = np.full(n_dom, cfg.n_items // n_dom)
    per_dom[: cfg.n_items % n_dom] += 1
    size = np.zeros((n_dom, n_themes), dtype=np.int64)
    for d in range(n_dom):
        size[d] = per_dom[d] // n_themes
        size[d, : per_dom[d] % n_themes] += 1
    start = np.concatenate([[0], np.cumsum(size.ravel())[:-1]]).reshape(n_dom, n_themes)
    return Layout(domains, templates, start, size)


def _item_rows(lay: Layout, ids: np.ndarray, rng: np.random.Generator) -> dict[str, list]:
    dom, theme, rank = lay.locate(ids)
    cols: dict[str, list] = {k: [] for k in ITEMS.names}
    cols[ROW_COL] = ids.tolist()
    pick = rng.integers(0, 1 << 30, size=(len(ids), 6))
    for i, item in enumerate(ids.tolist()):
        d, t, r = int(dom[i]), int(theme[i]), int(rank[i])
        root, products, sizes, suffixes, verbs = DOMAINS[lay.templates[d]]
        _, words, occasion = THEMES[t]
        p = pick[i]
        ptype, sub = products[p[0] % len(products)]
        w1 = words[p[1] % len(words)]
        w2 = words[(p[1] + 1 + p[2] % (len(words) - 1)) % len(words)]
        brand = f"{words[(t + r) % len(words)].split()[0]} {suffixes[(t + d + r // 3) % len(suffixes)]}"
        size = sizes[p[3] % len(sizes)].format(n=4 + p[4] % 29, k=2 + p[4] % 11)
        cols["item_id"].append(item)
        cols["domain"].append(lay.domains[d])
        cols["raw_id"].append(f"{lay.domains[d]}-{item:08d}")
        cols["title"].append(f"{brand} {w1} {w2} {ptype}, {size}")
        cols["categories"].append([root, sub])
        cols["brand"].append(brand)
        cols["description"].append(
            f"This {w2.lower()} {ptype.lower()} {verbs[p[5] % len(verbs)]} {occasion}, "
            f"with {w1.lower()} character."
        )
    return cols


def iter_items(cfg: SyntheticConfig, seed: int) -> Iterator[pa.Table]:
    """ITEMS (+ `_row`) chunks of `cfg.chunk_items` rows, ids 0..n_items-1 in order."""
    lay = layout(cfg)
    for c, lo in enumerate(range(0, lay.n_items, cfg.chunk_items)):
        ids = np.arange(lo, min(lo + cfg.chunk_items, lay.n_items), dtype=np.int64)
        rng = np.random.default_rng([seed, 0, c])
        yield items_table(_item_rows(lay, ids, rng))


def _sample_rows(probs: np.ndarray, owner: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per event from its owner's row of `probs`."""
    cum = np.cumsum(probs, axis=1)[owner]
    u = rng.random(len(owner)) * cum[:, -1]
    return (u[:, None] >= cum).sum(axis=1)


def user_events(cfg: SyntheticConfig, seed: int, lo: int, hi: int, chunk: int) -> dict[str, np.ndarray]:
    """Events of users lo..hi-1: user, item, domain index, theme index, timestamp (time order)."""
    lay = layout(cfg)
    rng = np.random.default_rng([seed, 1, chunk])
    n_users, n_dom, n_themes = hi - lo, len(lay.domains), lay.block_size.shape[1]
    sigma = 0.8
    lengths = rng.lognormal(np.log(max(cfg.mean_history, 1.0)) - sigma**2 / 2, sigma, n_users)
    lengths = np.clip(np.round(lengths), cfg.min_history, 10 * cfg.mean_history).astype(np.int64)
    owner = np.repeat(np.arange(n_users), lengths)
    n_events = len(owner)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pos = np.arange(n_events) - first[owner]

    # Theme preferences: 1..max_user_themes liked themes with Dirichlet weights.
    theme_probs = np.zeros((n_users, n_themes))
    k_liked = rng.integers(1, max(cfg.max_user_themes, 1) + 1, n_users)
    for u in range(n_users):
        liked = rng.choice(n_themes, size=min(k_liked[u], n_themes), replace=False)
        theme_probs[u, liked] = rng.dirichlet(np.full(len(liked), 2.0))
    theme = _sample_rows(theme_probs, owner, rng)
    noisy = rng.random(n_events) < cfg.theme_noise
    theme[noisy] = rng.integers(0, n_themes, noisy.sum())

    dom_probs = rng.dirichlet(np.full(n_dom, 0.8), n_users) if n_dom > 1 else np.ones((n_users, 1))
    dom = _sample_rows(dom_probs, owner, rng)
    if n_dom > 1 and cfg.cold_start_share > 0:
        target = n_dom - 1
        cold = rng.random(n_users) < cfg.cold_start_share
        ev_cold = cold[owner]
        moved = ev_cold & (dom == target)
        dom[moved] = rng.integers(0, n_dom - 1, moved.sum())
        last = first + lengths - 1
        dom[last[cold]] = target  # the test target is a target-domain item ...
        extra = cold & (rng.random(n_users) < 0.5) & (lengths > 2)
        dom[(first + rng.integers(0, np.maximum(lengths - 2, 1)))[extra]] = target  # ... and <= 1 more

    size = lay.block_size[dom, theme]
    rank = np.minimum((size * rng.random(n_events) ** cfg.popularity_skew).astype(np.int64), size - 1)
    item = lay.block_start[dom, theme] + rank

    start = T0 + rng.integers(0, 365 * DAY, n_users)
    gaps = 1 + rng.exponential(2 * DAY, n_events).astype(np.int64)
    gaps[first] = 0
    csum = np.cumsum(gaps)
    ts = start[owner] + csum - csum[first][owner]
    return {"user_id": lo + owner, "item_id": item, "domain": dom, "theme": theme, "timestamp": ts, "pos": pos}


def iter_interactions(cfg: SyntheticConfig, seed: int) -> Iterator[pa.Table]:
    """INTERACTIONS chunks (+ `_row`), one per `cfg.chunk_users` users."""
    lay = layout(cfg)
    names = np.array(lay.domains, dtype=object)
    row = 0
    for c, lo in enumerate(range(0, cfg.n_users, cfg.chunk_users)):
        ev = user_events(cfg, seed, lo, min(lo + cfg.chunk_users, cfg.n_users), c)
        n = len(ev["item_id"])
        yield interactions_table(
            {
                "user_id": ev["user_id"],
                "item_id": ev["item_id"],
                "domain": names[ev["domain"]].tolist(),
                "timestamp": ev["timestamp"],
                ROW_COL: np.arange(row, row + n),
            }
        )
        row += n


def iter_synthetic(cfg: SyntheticConfig, seed: int) -> Iterator[Chunk]:
    """Reader interface: item chunks, then interaction chunks."""
    lay = layout(cfg)
    log.info("synthetic catalog: %d domains %s, %d items, %d users", len(lay.domains), lay.domains, lay.n_items, cfg.n_users)
    for t in iter_items(cfg, seed):
        yield Chunk("items", ITEMS_FILE, t)
    for t in iter_interactions(cfg, seed):
        yield Chunk("interactions", INTERACTIONS_FILE, t)


def read_synthetic(cfg: SyntheticConfig, seed: int = 0) -> ReaderOutput:
    return collect(iter_synthetic(cfg, seed))
