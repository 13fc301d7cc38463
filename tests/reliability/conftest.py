"""Fixtures of the reliability suite: one small finished run directory (prepare, train pop,
evaluate pop on the shared Ray session), copied for each test that damages it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from semacdr_dist.config import load_config

REPO = Path(__file__).resolve().parents[2]
BASE_OVERRIDES = ["data=synthetic_small", "model=pop", "baselines=[]", "evaluate.num_shards=1"]


def small_cfg(run_dir, *overrides: str):
    return load_config([*BASE_OVERRIDES, f"run_dir={run_dir}", *overrides])


@pytest.fixture(scope="session")
def finished_run(ray_local, tmp_path_factory) -> Path:
    """prepare → train pop → evaluate pop through `run_pipeline`, once per test session."""
    from semacdr_dist.pipeline import run_pipeline

    run_dir = tmp_path_factory.mktemp("reliability") / "base"
    run_pipeline(small_cfg(run_dir), stages=("prepare", "train", "evaluate"))
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A private copy of the finished run directory (tests damage it)."""
    dest = tmp_path / "run"
    shutil.copytree(finished_run, dest, ignore=shutil.ignore_patterns("_lease"))
    return dest


def cli(*args: str, timeout: float = 300, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """`semacdr-dist ARGS` in a fresh process, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None) if not (env and "HYDRA_FULL_ERROR" in env) else None
    return subprocess.run([sys.executable, "-m", "semacdr_dist.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or REPO)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """The non-log lines of stderr (Python log lines start with a timestamp, Ray's C++ ones with '[')."""
    return [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln[:4].isdigit() and not ln.startswith("[")]
