"""Defect 4: the README's cluster command, runtime env included, submitted to a real local head;
and `local_cluster.py down` stops that head without signalling itself."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO

sys.path.insert(0, str(REPO / "ray_jobs"))

import local_cluster  # noqa: E402


@pytest.mark.slow
def test_readme_submit_with_runtime_env_then_down(tmp_path, monkeypatch):
    # The cluster image has semacdr-dist installed: here, the job's `python` is this venv's.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}")
    head = local_cluster.start_local_head(num_cpus=4)
    try:
        run_dir = tmp_path / "run"
        ray = str(Path(sys.executable).with_name("ray"))
        # README "Running on a cluster", with the small catalog and a local run_dir.
        cmd = [ray, "job", "submit", "--address", head.dashboard_url, "--working-dir", ".",
               "--runtime-env", "cluster/runtime_env.yaml", "--",
               "python", "ray_jobs/pipeline.py", "data=synthetic_small", "model=pop", "baselines=[]",
               "evaluate.num_shards=1", "cluster=remote", f"run_dir={run_dir}"]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "succeeded" in out.lower(), out[-4000:]
        assert "Failed to merge the Job's runtime env" not in out
        assert (run_dir / "eval" / "pop" / "metrics.json").is_file()
    finally:
        t0 = time.monotonic()
        down = subprocess.run([sys.executable, str(REPO / "ray_jobs" / "local_cluster.py"), "down", head.temp_dir],
                              capture_output=True, text=True, timeout=120)
        took = time.monotonic() - t0
    assert down.returncode == 0, (down.returncode, down.stderr[-2000:])  # 143 when it killed itself
    assert not head.processes(), "the head survived `down`"
    assert took < 90
