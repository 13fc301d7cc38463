"""Shared by the per-stage entry points: make the repo importable, run one CLI command.

Under `ray job submit --working-dir .` the job's cwd is the uploaded repo; the
driver connects to the cluster through RAY_ADDRESS, which the job server sets.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def run(command: str) -> None:
    from semacdr_dist.cli import main

    sys.exit(main([command, *sys.argv[1:]]))
