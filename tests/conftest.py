"""Shared fixtures: one small local Ray session for the whole test run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from semacdr_dist.runtime import engine_env

engine_env()  # before anything imports vllm / deepspeed

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FOOD_KITCHEN = SHARED_DATA / "food-kitchen"


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray (num_cpus=4, loopback, no dashboard), shared by every test that needs it."""
    import ray

    from semacdr_dist.runtime import RayConfig, ray_session

    tmp = tempfile.mkdtemp(prefix="ray-t-", dir="/tmp")
    with ray_session(RayConfig(num_cpus=4, object_store_memory_mb=768, temp_dir=tmp)):
        yield ray
    # ray_session shuts Ray down on exit


@pytest.fixture
def food_kitchen_dir() -> Path:
    if not FOOD_KITCHEN.exists():
        pytest.skip(f"{FOOD_KITCHEN} not present (../shared is beside the checkout in CI)")
    return FOOD_KITCHEN


def pytest_configure(config):
    os.environ.setdefault("SEMACDR_MODELS_DIR", str(Path.home() / ".cache" / "semacdr-dist" / "models"))
