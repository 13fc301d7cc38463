"""The Amazon reader's id map: the same answers as a dict, across merges of its sorted part."""

from __future__ import annotations

import random

from semacdr_dist.data.readers.amazon import CompactIds


def test_compact_ids_match_a_dict():
    rnd = random.Random(0)
    keys = [f"AG{rnd.getrandbits(64):x}" for _ in range(3000)] + ["é\udcff"]  # a lone surrogate too
    ids, ref = CompactIds(merge_every=128), {}
    for k in keys + keys[::7] + keys[::3]:  # repeats after and between merges
        assert ids.setdefault(k, len(ids)) == ref.setdefault(k, len(ref))
    assert len(ids) == len(ref) == len(set(keys))
    assert all(ids.get(k) == v for k, v in ref.items())
    assert ids.get("never added") is None
