"""Defect 6: Ray token auth end to end. A local head started with a token runs the pipeline for a
client holding the token; a wrong token fails within seconds with one line saying so."""

from __future__ import annotations

import sys
import time

import pytest

from .conftest import REPO, cli, error_lines

sys.path.insert(0, str(REPO / "ray_jobs"))

import local_cluster  # noqa: E402

TOKEN = "7f3c9a1e5b2d4c8f9a0b1c2d3e4f5a6b"


@pytest.mark.slow
def test_pipeline_with_token_auth_and_a_wrong_token(tmp_path):
    head = local_cluster.start_local_head(num_cpus=4, auth_token=TOKEN)
    try:
        args = ["pipeline", f"ray.address={head.address}", "data=synthetic_small", "model=pop", "baselines=[]",
                "evaluate.num_shards=1"]
        loopback = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}
        ok = cli(*args, f"run_dir={tmp_path / 'ok'}", env={**loopback, "RAY_AUTH_TOKEN": TOKEN}, timeout=600)
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert (tmp_path / "ok" / "eval" / "pop" / "metrics.json").is_file()

        t0 = time.monotonic()
        bad = cli(*args, f"run_dir={tmp_path / 'bad'}", env={**loopback, "RAY_AUTH_TOKEN": "0" * 32}, timeout=120)
        took = time.monotonic() - t0
        lines = error_lines(bad)
        assert bad.returncode == 1 and len(lines) == 1, bad.stderr[-3000:]
        assert f"could not connect to the Ray cluster at {head.address}: the cluster rejected this " \
               "client's auth token" in lines[0], lines[0]
        assert took < 60
    finally:
        head.stop()
