"""The transformers backend, and a SIGKILLed driver resumed without loss or duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from semacdr_dist.rundir import RunDir
from semacdr_dist.semantics.stage import run_semantics
from semacdr_dist.semantics.validate import _is_banned, banned_terms, words
from tests.semantics.conftest import small_config, write_items
from tests.semantics.test_stage import assert_exact_keys

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # ~1 min on an idle 2-core box (95 tok/s), 9 min on a loaded one
def test_hf_backend_views(ray_local, tmp_path):
    run = RunDir(tmp_path / "run")
    n = 12
    write_items(run, n, shard_size=6)
    cfg = small_config("llm=smollm2_hf", "llm.batch_size=6", "llm.hf_batch_size=12", "llm.max_retries=1")
    report = run_semantics(cfg, run)
    assert report["backend"] == "hf" and report["generation"]["tokens"] > 0
    assert_exact_keys(run, cfg, n)
    items = {r["item_id"]: r for r in run.read_table("items").to_pylist()}
    by_item: dict[int, dict[str, str]] = {}
    for r in run.read_table("views").to_pylist():
        assert r["text"].strip()
        by_item.setdefault(r["item_id"], {})[r["view"]] = r["text"]
        if r["view"] == "agnostic":
            assert not [w for w in words(r["text"]) if _is_banned(w, banned_terms(items[r["item_id"]]))]
    assert all(v["specific"] != v["agnostic"] for v in by_item.values())


@pytest.mark.slow
def test_sigkilled_driver_resumes_exact_keys(ray_local, tmp_path):
    """Run the stage in a child driver attached to this Ray, SIGKILL it mid-run, rerun here."""
    run = RunDir(tmp_path / "run")
    write_items(run, 40, shard_size=20)
    overrides = ["llm.batch_size=2", "llm.shard_rows=4", "llm.max_retries=0"]
    script = textwrap.dedent(
        f"""
        import sys, ray
        sys.path.insert(0, {str(ROOT)!r})
        from semacdr_dist.runtime import engine_env; engine_env()
        ray.init(address={ray_local.get_runtime_context().gcs_address!r})
        from tests.semantics.conftest import small_config
        from semacdr_dist.rundir import RunDir
        from semacdr_dist.semantics.stage import run_semantics
        run_semantics(small_config(*{overrides!r}), RunDir({run.uri!r}))
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ), cwd=ROOT)
    deadline = time.time() + 400
    try:
        while time.time() < deadline and len(run.list_files("views")) < 2 and child.poll() is None:
            time.sleep(0.3)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    shards = run.list_files("views")
    assert shards, "child wrote nothing before the deadline"
    partial = run.read_table("views").num_rows
    assert 0 < partial < 80
    cfg = small_config(*overrides)
    report = run_semantics(cfg, run)
    assert report["generation"]["requested_views"] == 80 - partial
    assert_exact_keys(run, cfg, 40)
