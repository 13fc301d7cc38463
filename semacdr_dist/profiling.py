"""Peak memory of a process tree, sampled in a background thread.

Ray workers are descendants of the driver when it starts a local cluster, so
the tree's summed RSS is what the machine actually pays for a run.
"""

from __future__ import annotations

import os
import threading

import psutil


def own_memory_bytes() -> dict[str, int]:
    """This process's resident memory from /proc/self/status: total (VmRSS), anonymous (heap:
    RssAnon) and shared (RssShmem: Ray object-store pages it has touched); zeros without /proc."""
    fields = {"VmRSS": "rss", "RssAnon": "anon", "RssShmem": "shmem"}
    found = dict.fromkeys(fields.values(), 0)
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in fields:
                    found[fields[key]] = int(rest.split()[0]) * 1024  # kB
    except OSError:
        pass
    return found


def tree_rss_bytes(pid: int | None = None) -> int:
    """Summed RSS of a process and all its descendants."""
    root = psutil.Process(pid or os.getpid())
    total = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class PeakRSS:
    """`with PeakRSS() as peak: ...; peak.gib` — the largest summed tree RSS seen."""

    def __init__(self, interval_s: float = 0.5, pid: int | None = None):
        self.interval_s = interval_s
        self.pid = pid
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_bytes = max(self.peak_bytes, tree_rss_bytes(self.pid))
            except psutil.Error:
                pass
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def gib(self) -> float:
        return self.peak_bytes / 2**30
