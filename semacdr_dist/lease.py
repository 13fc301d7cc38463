"""One writer per run directory: a lease with an owner and a heartbeat.

Two stages writing one run directory at once mix their outputs (items of one
seed, sequences of another, and a done marker on top). Every command that
writes a run directory therefore holds its lease, in ``<run_dir>/_lease/``.

The protocol works on any ``pyarrow.fs`` store, including object stores, which
have no exclusive create through pyarrow and no rename-if-absent: each
contender writes its own claim file (a unique name, so writes never collide),
then lists the directory, which is strongly consistent on local disks, S3, GCS
and HDFS. A contender that sees only its own live claim holds the lease. One
that sees an established holder removes its claim and fails at once, naming the
holder. Two that claim at the same moment both see two claims; both withdraw
and retry after a random pause, so at most one ever holds the lease.

The holder rewrites its claim every ``heartbeat_s`` seconds from a background
thread. A claim whose heartbeat is older than ``stale_after_s`` belongs to a
writer that died (kill -9, a lost node): the next contender deletes it and takes
the lease over, and says so in the log.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from typing import Any

import pyarrow.fs as pafs

from semacdr_dist.rundir import RunDir

log = logging.getLogger(__name__)

LEASE_DIR = "_lease"
HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0  # six missed heartbeats: the holder is gone, not slow


class RunDirLocked(RuntimeError):
    """Another live writer holds the run directory's lease."""


def _default_owner() -> str:
    return f"{os.environ.get('USER', 'unknown')}@{socket.gethostname()} pid {os.getpid()}"


class RunLease:
    """Context manager holding ``run``'s lease; raises :class:`RunDirLocked` if a live writer has it."""

    def __init__(self, run: RunDir, *, command: str = "", owner: str | None = None,
                 heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S,
                 retries: int = 5):
        self.run = run
        self.owner = owner or _default_owner()
        self.command = command
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.retries = retries
        self.claim_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        self.took_over: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = time.time()

    # -- claim files -------------------------------------------------------------
    def _rel(self, claim_id: str) -> str:
        return f"{LEASE_DIR}/{claim_id}.json"

    def _record(self, held: bool) -> dict[str, Any]:
        return {"owner": self.owner, "command": self.command, "claim": self.claim_id,
                "started": self.started, "heartbeat": time.time(), "held": held}

    def _write(self, held: bool) -> None:
        self.run.write_json(self._rel(self.claim_id), self._record(held))

    def _claims(self) -> list[dict[str, Any]]:
        base = self.run.path(LEASE_DIR)
        try:
            infos = self.run.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        except FileNotFoundError:
            return []
        out = []
        for info in infos:
            if info.type != pafs.FileType.File or not info.base_name.endswith(".json") or ".tmp-" in info.base_name:
                continue
            try:
                rec = self.run.read_json(f"{LEASE_DIR}/{info.base_name}")
            except (FileNotFoundError, OSError, ValueError):
                continue  # deleted or half-visible between list and read: not a live claim
            rec["claim"] = info.base_name[: -len(".json")]
            out.append(rec)
        return out

    def _stale(self, rec: dict[str, Any]) -> bool:
        return time.time() - float(rec.get("heartbeat", 0)) > self.stale_after_s

    @staticmethod
    def describe(rec: dict[str, Any]) -> str:
        age = time.time() - float(rec.get("heartbeat", 0))
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(rec.get("started", 0))))
        what = f" running `{rec['command']}`" if rec.get("command") else ""
        return f"{rec.get('owner', '?')}{what} since {started} (last heartbeat {age:.0f}s ago)"

    # -- acquire / release ----------------------------------------------------------
    def acquire(self) -> RunLease:
        for attempt in range(self.retries + 1):
            self._write(held=False)
            others = [c for c in self._claims() if c["claim"] != self.claim_id]
            for rec in [c for c in others if self._stale(c)]:
                log.warning("run directory %s: taking over a stale lease from %s", self.run.uri, self.describe(rec))
                self.run.delete(self._rel(rec["claim"]))
                self.took_over.append(rec)
            live = [c for c in others if not self._stale(c)]
            if not live:
                self._write(held=True)
                self._start_heartbeat()
                return self
            self.run.delete(self._rel(self.claim_id))
            holders = [c for c in live if c.get("held")]
            if holders or attempt == self.retries:
                rec = (holders or live)[0]
                raise RunDirLocked(
                    f"run directory {self.run.display()} is in use by {self.describe(rec)}; wait for it to "
                    f"finish, or use another run_dir (a lease whose heartbeat is older than "
                    f"{self.stale_after_s:.0f}s is taken over automatically)"
                )
            time.sleep(random.uniform(0.05, 0.5))  # a simultaneous claim: back off, one of us wins
        raise AssertionError("unreachable")

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    self._write(held=True)
                except Exception as err:  # a transient store error must not kill the stage
                    log.warning("run directory %s: lease heartbeat failed: %s", self.run.uri, err)

        self._thread = threading.Thread(target=beat, name="semacdr-lease-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 5)
        try:
            self.run.delete(self._rel(self.claim_id))
        except OSError as err:
            log.warning("run directory %s: could not remove the lease: %s", self.run.uri, err)

    def __enter__(self) -> RunLease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(run: RunDir) -> dict[str, Any] | None:
    """The live holder's record, if any (for status displays and tests)."""
    probe = RunLease(run)
    live = [c for c in probe._claims() if c.get("held") and not probe._stale(c)]
    return live[0] if live else None


__all__ = ["RunLease", "RunDirLocked", "holder"]
