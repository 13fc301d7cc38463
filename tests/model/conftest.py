"""Fixtures of the model tests; the helpers live in model_testkit.py."""

from __future__ import annotations

import pytest
import torch
from model_testkit import catalog, features  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; with two, OpenMP spin-waits on a busy shared
    box and a 16 ms step takes ~1 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
