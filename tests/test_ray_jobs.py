"""The Ray job path: a local head bound to loopback only, a job submitted through
the Jobs API and polled to SUCCEEDED."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "ray_jobs"))

import local_cluster  # noqa: E402

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


@pytest.fixture(scope="module")
def head():
    h = local_cluster.start_local_head(num_cpus=4)
    yield h
    h.stop()
    assert not h.processes(), "head processes survived stop()"


def test_head_listens_on_loopback_only(head):
    listening = head.listening_addresses()
    names = {name for _, _, name in listening}
    assert "gcs_server" in names and "raylet" in names, listening
    assert any(port == int(head.dashboard_url.rsplit(":", 1)[1]) for _, port, _ in listening)
    exposed = [(ip, port, name) for ip, port, name in listening if ip not in LOOPBACK]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_pipeline_job_succeeds(head, tmp_path):
    run_dir = tmp_path / "run"
    entry = f"{sys.executable} {REPO / 'ray_jobs' / 'pipeline.py'}"
    args = f"data=synthetic_small model=pop baselines=[] evaluate.num_shards=1 run_dir={run_dir}"
    status, logs = local_cluster.submit_and_wait(head.dashboard_url, f"{entry} {args}", timeout_s=600)
    assert status == "SUCCEEDED", logs[-3000:]
    assert (run_dir / "stats.json").is_file()
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "pipeline.json").is_file()


def test_local_session_listens_on_loopback_only(ray_local):
    """The session every stage opens locally (ray_session) exposes nothing beyond loopback."""
    import psutil

    @ray_local.remote
    def pid() -> int:
        import os

        return os.getpid()

    ray_local.get(pid.remote())
    me = psutil.Process()
    listening = []
    for p in [me, *me.children(recursive=True)]:
        try:
            listening += [(c.laddr.ip, c.laddr.port, p.name()) for c in p.net_connections("inet")
                          if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            continue
    assert any(name == "gcs_server" for _, _, name in listening), listening
    exposed = [x for x in listening if x[0] not in LOOPBACK]
    assert not exposed, f"listening beyond loopback: {exposed}"
