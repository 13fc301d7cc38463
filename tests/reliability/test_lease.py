"""Defect 1: one writer per run directory (a lease with owner and heartbeat, on any pyarrow.fs)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from semacdr_dist.lease import LEASE_DIR, RunDirLocked, RunLease, holder
from semacdr_dist.rundir import RunDir

from .conftest import REPO, cli, error_lines


def test_second_writer_fails_at_once_naming_the_holder(tmp_path):
    run = RunDir(tmp_path / "run")
    with RunLease(run, owner="alice@box pid 1", command="prepare"):
        t0 = time.perf_counter()
        with pytest.raises(RunDirLocked, match=r"in use by alice@box pid 1 running `prepare`"):
            RunLease(run, owner="bob").acquire()
        assert time.perf_counter() - t0 < 5
        assert holder(run)["owner"] == "alice@box pid 1"
    # released: the next writer gets it, and no claim file is left behind
    assert holder(run) is None
    with RunLease(run, owner="bob"):
        assert holder(run)["owner"] == "bob"
    assert not list((tmp_path / "run" / LEASE_DIR).glob("*.json"))


def test_heartbeat_advances_and_a_stale_lease_is_taken_over(tmp_path):
    run = RunDir(tmp_path / "run")
    with RunLease(run, owner="alive", heartbeat_s=0.2) as lease:
        first = holder(run)["heartbeat"]
        time.sleep(0.7)
        assert holder(run)["heartbeat"] > first
        assert lease.took_over == []
    # a writer killed with -9 leaves its claim; its heartbeat stops
    dead = {"owner": "dead@box pid 9", "command": "prepare", "started": time.time() - 600,
            "heartbeat": time.time() - 300, "held": True}
    (tmp_path / "run" / LEASE_DIR / "00000000000000000001-dead.json").write_text(json.dumps(dead))
    with RunLease(run, owner="new", stale_after_s=60) as lease:
        assert [r["owner"] for r in lease.took_over] == ["dead@box pid 9"]
        assert holder(run)["owner"] == "new"


def test_simultaneous_claims_elect_exactly_one(tmp_path):
    """Processes racing for one lease: exactly one wins, the others are told who holds it."""
    script = (
        "import sys, time; from semacdr_dist.lease import RunLease, RunDirLocked; from semacdr_dist.rundir import RunDir\n"
        "lease = RunLease(RunDir(sys.argv[1]), owner=sys.argv[2])\n"
        "time.sleep(max(0, float(sys.argv[3]) - time.time()))\n"
        "try:\n    lease.acquire()\nexcept RunDirLocked as e:\n    print('LOST', e); sys.exit(1)\n"
        "print('WON'); time.sleep(3); lease.release()\n"
    )
    start = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "run"), f"w{i}", str(start)],
                              stdout=subprocess.PIPE, text=True, cwd=REPO) for i in range(4)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert sum(o.startswith("WON") for o in outs) == 1, outs
    assert all("in use by w" in o for o in outs if o.startswith("LOST")), outs


def test_cli_refuses_a_leased_run_dir_with_one_line(tmp_path):
    run = RunDir(tmp_path / "run")
    with RunLease(run, owner="carol@box pid 42", command="pipeline"):
        t0 = time.perf_counter()
        proc = cli("prepare", "data=synthetic_small", f"run_dir={tmp_path / 'run'}")
        took = time.perf_counter() - t0
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and "carol@box pid 42" in lines[0] and "in use" in lines[0], proc.stderr
    assert took < 60  # fails before Ray starts (the CLI's own imports dominate)
    assert not (tmp_path / "run" / "config.yaml").exists()  # nothing was written


@pytest.mark.slow
def test_two_concurrent_prepares_do_not_mix(tmp_path):
    """The issue's reproduction: a second prepare (another seed) 2 s after the first."""
    run_dir = tmp_path / "run"
    args = ["prepare", "data=synthetic_small", f"run_dir={run_dir}"]
    first = subprocess.Popen([sys.executable, "-m", "semacdr_dist.cli", *args], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    second = cli(*args, "data.synthetic.seed=7")
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert second.returncode == 1 and "in use by" in second.stderr
    cfg = (run_dir / "config.yaml").read_text()
    assert "seed: 7" not in cfg
