"""Defect 5: run directories on an object store. A real S3-compatible server (moto's, on
127.0.0.1) holds run_dir=s3://...; the pipeline runs there end to end through the CLI, and the
lease and manifests work on it as on a local disk."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import pyarrow.fs as pafs
import pytest

from semacdr_dist.lease import RunDirLocked, RunLease
from semacdr_dist.manifest import MANIFEST, InputError, verify_inputs
from semacdr_dist.rundir import RunDir

from .conftest import cli

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on a free loopback port; yields the URI query that points pyarrow at it."""
    exe = os.path.join(os.path.dirname(sys.executable), "moto_server")  # this venv's, not a shim on PATH
    if not os.path.exists(exe):
        pytest.skip("moto[server] is not installed (pip install -e '.[dev]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.environ.update(CREDENTIALS)  # this process's pyarrow (the CLI children get them explicitly)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        query = f"endpoint_override=127.0.0.1:{port}&scheme=http"
        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True)
        fs.create_dir("runs")
        yield query
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _uri(query: str) -> str:
    return f"s3://runs/{uuid.uuid4().hex[:8]}?{query}"


def test_lease_and_run_dir_on_s3(s3_server):
    run = RunDir(_uri(s3_server))
    assert isinstance(run.fs, pafs.S3FileSystem)
    with RunLease(run, owner="writer-1"):
        with pytest.raises(RunDirLocked, match="in use by writer-1"):
            RunLease(run, owner="writer-2").acquire()
    with RunLease(run, owner="writer-2"):
        pass
    assert run.uri_of("items").endswith(f"?{s3_server}")  # store options travel with every URI


def test_manifests_verify_on_s3(s3_server, finished_run):
    """A finished run copied to the store: its manifests check out there, and a shard deleted on
    the store is named (in-process and cheap; the full pipeline on S3 is the slow test below)."""
    uri = _uri(s3_server)
    run = RunDir(uri)
    pafs.copy_files(str(finished_run), run.path(""), source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=run.fs)
    assert verify_inputs(run, "eval/pop") > 4
    run.delete("sequences", "test", "part-00001.parquet")
    with pytest.raises(InputError, match=r"^s3://runs/\w+/sequences/test/part-00001\.parquet: missing"):
        verify_inputs(run, "eval/pop")


@pytest.mark.slow  # ~45 s: two CLI runs, each with its own Ray session
def test_pipeline_on_s3(s3_server):
    uri = _uri(s3_server)
    proc = cli("pipeline", f"run_dir='{uri}'", "data=synthetic_small", "model=pop", "baselines=[]",
               "evaluate.num_shards=1", env=CREDENTIALS, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = RunDir(uri)
    for stage in ("prepare", "train/pop", "eval/pop"):
        assert run.is_done(stage) and run.exists(stage, MANIFEST)
    assert run.read_json("eval/pop/metrics.json")["metrics"]["test/ndcg@10"] > 0
    assert run.exists("compare.md") and run.exists("config.yaml")

    # a shard lost on the store is named before evaluate reads anything
    run.delete("sequences", "test", "part-00002.parquet")
    proc = cli("evaluate", f"run_dir='{uri}'", "data=synthetic_small", "model=pop", "baselines=[]",
               "evaluate.num_shards=1", "force=true", env=CREDENTIALS, timeout=300)
    assert proc.returncode == 1 and "sequences/test/part-00002.parquet: missing" in proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow
def test_deepspeed_training_on_s3(s3_server):
    """Ray Train + DeepSpeed checkpoints and the export go to the store too (~2 min on 2 cores)."""
    uri = _uri(s3_server)
    proc = cli("pipeline", f"run_dir='{uri}'", "data=synthetic_small", "model=sasrec", "baselines=[]",
               "train.epochs=1", "evaluate.num_shards=1", env=CREDENTIALS, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = RunDir(uri)
    assert run.is_done("eval/sasrec") and run.list_files("export/sasrec", suffix=".safetensors")
    assert run.exists("checkpoints", "sasrec")
