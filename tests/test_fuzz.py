"""A short, seeded run of every coverage-guided fuzzer (``tests/fuzz``): no input may end in an
exception other than edgeprune's own error types, or crash the process. ``benchmarks/fuzz.py`` runs
the same targets for ten minutes each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")
pytest.importorskip("ultralytics")

FUZZ = Path(__file__).with_name("fuzz")
TARGETS = ["checkpoint", "pickle", "onnx", "tflite", "openvino", "target"]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds")
    subprocess.run([sys.executable, str(FUZZ / "make_seeds.py"), str(out)], check=True, capture_output=True)
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_fuzzer_finds_nothing_in_a_seeded_run(target, seeds, tmp_path):
    r = subprocess.run(
        [sys.executable, str(FUZZ / "fuzz_targets.py"), target, "-runs=1500", "-seed=1",
         f"-artifact_prefix={tmp_path}/", str(seeds / target)],
        capture_output=True, text=True, errors="replace", cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "Done 1500 runs" in r.stderr
