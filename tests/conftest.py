"""Shared test setup: tests never read the user's weights folder or download anything."""

import os

import pytest


@pytest.fixture(autouse=True)
def isolated_weights(tmp_path_factory, monkeypatch):
    """Point the weights manager at an empty per-session folder unless a test sets its own."""
    monkeypatch.setenv("XREAL_BENCH_WEIGHTS", str(tmp_path_factory.getbasetemp() / "weights"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield


def pytest_configure(config):
    """One intra-op thread: tiny test convolutions are far slower with thread contention."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
