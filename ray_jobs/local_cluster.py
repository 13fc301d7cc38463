"""A local Ray head for `ray job submit`, bound to 127.0.0.1 only.

Ray resolves ``--node-ip-address=127.0.0.1`` to the machine's routable address
unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``; with it, GCS, raylet, agents,
the dashboard and the job server all listen on loopback (a test checks every
listening socket of the head's processes). Ports are picked free up front so
two heads on one machine never collide.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


@dataclass
class LocalHead:
    address: str  # GCS address, for ray.init(address=...)
    dashboard_url: str  # job server, for JobSubmissionClient / `ray job submit --address`
    temp_dir: str

    def processes(self) -> list[psutil.Process]:
        """Every process of this head: those naming its temp dir, and their descendants."""
        roots = []
        # `local_cluster.py down TEMP_DIR` names the temp dir on its own command line: never
        # count this process or its parents (the shell, pytest) as the head's.
        me = psutil.Process()
        spared = {me.pid, *(q.pid for q in me.parents())}
        for p in psutil.process_iter(["cmdline"]):
            try:
                if p.pid not in spared and any(self.temp_dir in a for a in p.info["cmdline"] or []):
                    roots.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        found = {p.pid: p for p in roots}
        for p in roots:
            try:
                for c in p.children(recursive=True):
                    found.setdefault(c.pid, c)
            except psutil.NoSuchProcess:
                continue
        return list(found.values())

    def listening_addresses(self) -> list[tuple[str, int, str]]:
        """(ip, port, process name) of every TCP socket this head's processes listen on."""
        out = []
        for p in self.processes():
            try:
                for c in p.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        out.append((c.laddr.ip, c.laddr.port, p.name()))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out

    def stop(self, timeout: float = 15.0) -> None:
        """Stop only this head (`ray stop` would stop every Ray on the machine).

        Processes can start while others exit (a worker respawned by a dying
        raylet), so rescan until none is left.
        """
        deadline = time.monotonic() + 3 * timeout
        while (procs := self.processes()) and time.monotonic() < deadline:
            for p in procs:
                try:
                    p.terminate()
                except psutil.NoSuchProcess:
                    pass
            _, alive = psutil.wait_procs(procs, timeout=timeout)
            for p in alive:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(alive, timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def start_local_head(num_cpus: int = 4, temp_dir: str | None = None, wait_s: float = 90.0,
                     auth_token: str | None = None) -> LocalHead:
    """Start a loopback-only Ray head with the dashboard and job server; wait until jobs are accepted.

    ``auth_token``: turn on Ray's token auth (every client and job then needs RAY_AUTH_TOKEN).
    """
    temp_dir = temp_dir or tempfile.mkdtemp(prefix="ray-head-", dir="/tmp")
    ports = {name: free_port() for name in ("port", "dashboard-port", "dashboard-agent-listen-port",
                                             "dashboard-agent-grpc-port", "runtime-env-agent-port",
                                             "node-manager-port", "object-manager-port",
                                             "metrics-export-port", "ray-client-server-port")}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    cmd = [ray_bin, "start", "--head", f"--node-ip-address={LOOPBACK}", f"--dashboard-host={LOOPBACK}",
           "--include-dashboard=true", f"--num-cpus={num_cpus}", f"--temp-dir={temp_dir}",
           "--disable-usage-stats"] + [f"--{k}={v}" for k, v in ports.items()]
    env = {**os.environ, **LOOPBACK_ENV}
    if auth_token:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=auth_token)
    env.pop("RAY_ADDRESS", None)
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=wait_s)
    head = LocalHead(
        address=f"{LOOPBACK}:{ports['port']}",
        dashboard_url=f"http://{LOOPBACK}:{ports['dashboard-port']}",
        temp_dir=temp_dir,
    )
    _wait_for_job_agent(head, ports["dashboard-agent-listen-port"], wait_s, auth_token)
    log.info("local Ray head at %s, jobs at %s", head.address, head.dashboard_url)
    return head


def _wait_for_job_agent(head: LocalHead, agent_port: int, wait_s: float, auth_token: str | None = None) -> None:
    """The job server answers 'no available agent' until the node's agent serves HTTP."""
    import urllib.request

    deadline = time.monotonic() + wait_s
    last = ""
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(f"{head.dashboard_url}/api/version")
            if auth_token:
                req.add_header("Authorization", f"Bearer {auth_token}")
            with urllib.request.urlopen(req, timeout=5):
                pass
            with socket.create_connection((LOOPBACK, agent_port), timeout=2):
                return
        except OSError as err:
            last = str(err)
        time.sleep(1.0)
    head.stop()
    raise TimeoutError(f"Ray head at {head.dashboard_url} did not accept jobs in {wait_s}s ({last})")


def submit_and_wait(head_url: str, entrypoint: str, runtime_env: dict | None = None,
                    timeout_s: float = 600.0) -> tuple[str, str]:
    """Submit a job through the Jobs API, poll it to a terminal state; (status, logs)."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head_url)
    deadline = time.monotonic() + timeout_s
    while True:  # the first seconds after start the agent may not be registered yet
        try:
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
            break
        except RuntimeError as err:
            if "No available agent" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)
    while True:
        status = client.get_job_status(job_id)
        if status.is_terminal() or time.monotonic() > deadline:
            return str(status.value), client.get_job_logs(job_id)
        time.sleep(2.0)


def main(argv: list[str] | None = None) -> int:
    """`python ray_jobs/local_cluster.py up [--num-cpus N]` prints the addresses; `down TEMP_DIR` stops it."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a loopback-only head")
    up.add_argument("--num-cpus", type=int, default=4)
    up.add_argument("--temp-dir", default=None)
    down = sub.add_parser("down", help="stop the head started with this temp dir")
    down.add_argument("temp_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.cmd == "up":
        head = start_local_head(args.num_cpus, args.temp_dir)
        print(f"RAY_ADDRESS={head.dashboard_url}")
        print(f"GCS={head.address}")
        print(f"stop with: python ray_jobs/local_cluster.py down {head.temp_dir}")
    else:
        LocalHead("", "", args.temp_dir).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
