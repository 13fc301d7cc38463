"""Length-bucketed batching of the training stream (`train.length_buckets`)."""

from __future__ import annotations

import numpy as np

from semacdr_dist.train.loop import length_buckets


def _batch(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    history = np.empty(n, dtype=object)
    history[:] = [np.arange(int(k)) for k in rng.integers(1, 50, n)]
    return {"history": history, "target": np.arange(n), "user_id": np.arange(n) * 10}


def test_every_row_once_in_batches_of_similar_length():
    big = _batch(1000)
    out = length_buckets(big, 128, np.random.default_rng(1))
    assert [len(b["target"]) for b in out].count(128) == 7 and sorted(len(b["target"]) for b in out)[0] == 104
    rows = np.concatenate([b["target"] for b in out])
    assert sorted(rows.tolist()) == list(range(1000))  # nothing lost, nothing repeated
    for b in out:  # columns stay aligned
        np.testing.assert_array_equal(b["user_id"], b["target"] * 10)
        assert all(len(h) == len(big["history"][t]) for h, t in zip(b["history"], b["target"], strict=True))
    # padded cells (rows x longest history per batch) fall far below one random batching's
    bucketed = sum(len(b["target"]) * max(map(len, b["history"])) for b in out)
    lengths = np.array([len(h) for h in big["history"]])
    random = sum(len(c) * lengths[c].max() for c in np.array_split(np.random.default_rng(2).permutation(1000), 8))
    assert bucketed < 0.7 * random, (bucketed, random)


def test_seeded_and_batch_order_shuffled():
    big = _batch(1024)
    a = length_buckets(big, 128, np.random.default_rng(5))
    b = length_buckets(big, 128, np.random.default_rng(5))
    assert all(np.array_equal(x["target"], y["target"]) for x, y in zip(a, b, strict=True))
    widths = [max(map(len, x["history"])) for x in a]
    assert widths != sorted(widths)  # not served shortest-first


def test_a_buffer_above_the_shard_is_a_full_seeded_shuffle(ray_local):
    """Buffers above WINDOW_SHUFFLE_ABOVE: every row once per epoch, rows from the whole shard mixed
    in the first batch, the same order for the same seed (a resumed epoch replays it)."""
    import ray.data

    from semacdr_dist.train.config import TrainConfig
    from semacdr_dist.train.loop import WINDOW_SHUFFLE_ABOVE, _epoch_batches

    n = 3000
    rows = [{"target": i, "history": list(range(i % 40 + 1))} for i in range(n)]
    shard = ray.data.from_items(rows).iterator()
    tcfg = TrainConfig(batch_size=128, length_buckets=4, shuffle_buffer=WINDOW_SHUFFLE_ABOVE + 1)

    def epoch(seed: int) -> list[np.ndarray]:
        return [b["target"] for b in _epoch_batches(shard, tcfg, lambda b: b, seed)]

    first = epoch(7)
    seen = np.concatenate(first)
    assert sorted(seen.tolist()) == list(range(n)) and max(len(b) for b in first) == 128
    assert np.ptp(first[0]) > n // 2  # not a window of neighbouring rows
    assert all(np.array_equal(a, b) for a, b in zip(first, epoch(7), strict=True))
    assert not np.array_equal(np.concatenate(epoch(8)), seen)
