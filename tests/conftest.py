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


@pytest.fixture(scope="session")
def demo_trained(tmp_path_factory) -> tuple[Path, Path]:
    """The demo's trained YOLOv8n (160 px) as a plain checkpoint and a small set of its data:
    a model whose predictions mean something, for tests of accuracy."""
    from edgeprune.data import make_synthetic_dataset
    from edgeprune.demo import BASELINE_ASSET, load_portable

    root = tmp_path_factory.mktemp("demo-trained")
    detector, _ = load_portable(BASELINE_ASSET)
    checkpoint = detector.save(root / "base.pt")
    return checkpoint, make_synthetic_dataset(root / "data", n_train=8, n_val=4, imgsz=160, seed=0)


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one intra-op thread for a module's tests: tiny inputs gain nothing from threads, and on
    a busy machine the thread pool's spin-waits cost more than the work (a 64 px forward went from
    1 s to 0.03 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def predictions(det, x):
    """A detector's decoded predictions on ``x`` in eval mode (Segment returns ``(predictions, protos)``)."""
    import torch

    with torch.no_grad():
        y = det.inference_module().eval()(x)
    return y[0] if isinstance(y, (tuple, list)) else y


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


def schema_problems(folder: Path) -> list[str]:
    """Every report under ``folder`` checked against report.schema.json: one line per problem."""
    import json

    import jsonschema

    from edgeprune.report.json import is_report, report_schema

    validator = jsonschema.Draft202012Validator(report_schema())
    problems = []
    for path in sorted(folder.rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if is_report(data):
            for e in validator.iter_errors(data):
                problems.append(f"{path}: {'.'.join(map(str, e.path)) or '(top)'}: {e.message[:200]}")
    return problems


def pytest_sessionfinish(session, exitstatus):
    """Every report the tests wrote (in-process or through the CLI) has the schema's stable keys."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or os.environ.get("EDGEPRUNE_SKIP_SCHEMA_CHECK"):
        return
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        return
    problems = schema_problems(factory.getbasetemp())
    if problems:
        print("\nreports that break report.schema.json:\n  " + "\n  ".join(problems[:20]), file=sys.stderr)
        session.exitstatus = 1
