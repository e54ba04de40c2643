"""Shared fixtures: tiny synthetic data and the network switched off for Ultralytics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Before anything imports Ultralytics: no connectivity check, no events, no auto-install.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_VERBOSE", "0")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A tiny synthetic detection set (64 px) shared by the tests; returns its data.yaml."""
    from edgeprune.data import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), n_train=16, n_val=8, imgsz=64, seed=3)


def run_cli(
    *args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``edgeprune ARGS`` in a fresh process (as a user would), capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "edgeprune.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )
