"""EnginePool on real Ray actors (tiny ones, no engine): Ray restarts an actor that dies and
re-runs its calls; the pool only bisects a payload that still fails, down to the item."""

from __future__ import annotations

import os
import sys
import time

import pytest
import ray.cloudpickle

from semacdr_dist.semantics.workers import EnginePool

# The actor class below travels by value: Ray's workers cannot import this test module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

POISON = 13  # an item whose call kills the actor's process, every time


class _Doubler:
    def __init__(self):
        self.incarnation = {"pid": os.getpid(), "started_at": time.time()}

    def ready(self) -> dict:
        return {"incarnation": self.incarnation}

    def run(self, xs: list[int]) -> dict:
        if POISON in xs:
            os._exit(1)  # as a crashing engine would: the process is gone
        time.sleep(0.05)
        return {"out": [2 * x for x in xs], "incarnation": self.incarnation}


def _halves(xs: list[int]):
    return (xs[: len(xs) // 2], xs[len(xs) // 2 :]) if len(xs) > 1 else None


def _pool(ray, n: int, max_restarts: int) -> EnginePool:
    cls = ray.remote(_Doubler).options(num_cpus=0.1, max_restarts=max_restarts, max_task_retries=1)
    return EnginePool([cls.remote() for _ in range(n)], call=lambda a, p: a.run.remote(p), split=_halves,
                      max_in_flight=2)


def test_a_poison_item_is_bisected_out_and_nothing_else_is_lost(ray_local):
    pool = _pool(ray_local, 2, max_restarts=-1)
    pool.start()
    try:
        results = list(pool.map_unordered([list(range(i, i + 4)) for i in range(0, 20, 4)]))
    finally:
        pool.close()
    failed = [p for p, r in results if r is None]
    got = {x: y for p, r in results if r is not None for x, y in zip(p, r["out"], strict=True)}
    assert failed == [[POISON]]
    assert got == {x: 2 * x for x in range(20) if x != POISON}
    s = pool.stats
    # [12..15] alone, then [12, 13] + [14, 15], then [12] + [13]: two splits, one item given up
    assert (s.bisections, s.failed_payloads) == (2, 1)
    # [12..15] among others, then alone, [12, 13], [13]: each died (neighbours may have died too)
    assert s.actor_restarts >= 1 and len(s.errors) >= 4


def test_an_actor_ray_cannot_restart_is_retired_and_the_last_one_stops_the_run(ray_local):
    pool = _pool(ray_local, 1, max_restarts=0)
    pool.start()
    try:
        with pytest.raises(RuntimeError, match="every engine actor died"):
            list(pool.map_unordered([[POISON], [1]]))
    finally:
        pool.close()
    assert pool.stats.errors and pool.stats.actor_restarts == 0  # it died once; nothing came back
