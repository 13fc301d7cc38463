"""Sequence batches: the padded tensors every model, trainer and evaluator share.

`history` is left-padded with -1 so the most recent item is always last
(the position a causal encoder reads the user state from). A batch is only as
wide as its longest history (at most ``max_len``): encoders index positions by
recency, so the width changes cost, never outputs, and short-history catalogs
(Food-Kitchen: median 6 of max 50) stop paying for 50 positions per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

try:  # Ray Data's collate base class; plain callables work where Ray is absent.
    from ray.data.collate_fn import NumpyBatchCollateFn as _CollateBase
except ImportError:  # pragma: no cover
    _CollateBase = object

PAD = -1
BATCH_KEYS = ("history", "history_domain", "target", "target_domain", "user_id")


def pad_left(rows: Iterable[Sequence[int] | np.ndarray], max_len: int, pad: int = PAD) -> np.ndarray:
    """[B, max_len] int64: each row's last `max_len` values, right-aligned, `pad` before them."""
    rows = list(rows)
    out = np.full((len(rows), max_len), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        r = np.asarray(r, dtype=np.int64)[-max_len:] if max_len else np.empty(0, np.int64)
        if len(r):
            out[i, max_len - len(r) :] = r
    return out


def collate_numpy(
    batch: Mapping[str, Any], max_len: int, domains: Sequence[str]
) -> dict[str, np.ndarray]:
    """Pad a column batch of SEQUENCES rows (lists as arrays/lists) into the batch dict."""
    index = {d: i for i, d in enumerate(domains)}
    target_domain = batch["target_domain"]
    if len(target_domain) and not np.issubdtype(np.asarray(target_domain).dtype, np.integer):
        try:
            target_domain = [index[str(d)] for d in target_domain]
        except KeyError as err:
            raise KeyError(f"target_domain {err} is not one of {list(domains)}") from None
    width = max(1, min(max_len, max((len(h) for h in batch["history"]), default=0)))
    history = pad_left(batch["history"], width)
    history_domain = pad_left(batch["history_domain"], width)
    if (history_domain[history == PAD] != PAD).any() or (history_domain[history != PAD] < 0).any():
        raise ValueError("history and history_domain differ in length")
    return {
        "history": history,
        "history_domain": history_domain,
        "target": np.asarray(batch["target"], dtype=np.int64),
        "target_domain": np.asarray(target_domain, dtype=np.int64),
        "user_id": np.asarray(batch["user_id"], dtype=np.int64),
    }


def to_torch(batch: Mapping[str, np.ndarray], device: Any = None) -> dict[str, Any]:
    import torch

    # Ray Data hands out read-only arrays; torch warns on (and must not write through) them.
    return {k: torch.as_tensor(v if v.flags.writeable else v.copy(), device=device) for k, v in batch.items()}


class SequenceCollate(_CollateBase):
    """Ray Data collate: `ds.iter_torch_batches(collate_fn=SequenceCollate(max_len, domains))`."""

    def __init__(self, max_len: int, domains: Sequence[str], device: Any = None):
        self.max_len = max_len
        self.domains = list(domains)
        self.device = device

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        return to_torch(collate_numpy(batch, self.max_len, self.domains), self.device)


def collate_rows(
    rows: pa.Table | Sequence[Mapping[str, Any]], max_len: int, domains: Sequence[str], device: Any = None
) -> dict[str, Any]:
    """In-process collate (tests, small catalogs): a SEQUENCES table or list of row dicts → torch batch."""
    if isinstance(rows, pa.Table):
        cols = {k: rows.column(k).to_pylist() for k in ("history", "history_domain", "target", "target_domain", "user_id")}
    else:
        cols = {k: [r[k] for r in rows] for k in ("history", "history_domain", "target", "target_domain", "user_id")}
    return to_torch(collate_numpy(cols, max_len, domains), device)
