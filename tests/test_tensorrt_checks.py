"""TensorRT, checked as far as a machine without an NVIDIA GPU allows: the adapter type-checks
against TensorRT's own stubs, and the Q/DQ ONNX the device builds its INT8 engine from is a valid
model (``onnx.checker`` with full checks) that polygraphy's ONNX Runtime runner finds within a
stated tolerance of the FP32 ONNX. Building and running an engine is not done here."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
STUBS = Path(sys.prefix) / "stubs"  # `make install` puts tensorrt-stubs there (see the Makefile)
IMGSZ = 160

# Q/DQ INT8 vs FP32 on the demo's trained YOLOv8n, per part of its (1, 4 + nc, anchors) output,
# as median absolute error over the elements (polygraphy's check_error_stat="median", so a few
# anchors far from any object do not decide). Measured here: boxes 0.68 px (of a 160 px input),
# class scores 1.1e-5.
BOX_MEDIAN_ATOL_PX = 1.0
SCORE_MEDIAN_ATOL = 1e-3


def _mypy(*args: str) -> subprocess.CompletedProcess:
    if not (STUBS / "tensorrt_bindings").is_dir():
        pytest.skip(f"tensorrt-stubs are not in {STUBS}: run `make install`")
    env = {**os.environ, "MYPYPATH": str(STUBS)}
    return subprocess.run(
        [sys.executable, "-m", "mypy", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_tensorrt_adapter_type_checks_against_tensorrt_stubs():
    out = _mypy()  # [tool.mypy] in pyproject.toml names the adapter
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "Success: no issues found in 1 source file" in out.stdout


def test_the_stubs_catch_a_wrong_tensorrt_call(tmp_path):
    """The check is not vacuous: a call TensorRT does not have fails it."""
    bad = tmp_path / "bad_trt.py"
    bad.write_text(
        "import tensorrt as trt\n\n"
        "def build(logger: trt.Logger) -> None:\n"
        "    builder = trt.Builder(logger)\n"
        "    builder.create_network_v2(0)\n"
        "    builder.build_serialized_network(builder.create_network(0))\n"
    )
    out = _mypy("--config-file", str(ROOT / "pyproject.toml"), str(bad))
    assert out.returncode == 1
    assert '"Builder" has no attribute "create_network_v2"' in out.stdout
    assert 'Missing positional argument "config" in call to "build_serialized_network"' in out.stdout


@pytest.fixture(scope="module")
def qdq(demo_trained, tmp_path_factory):
    """The TensorRT INT8 export of the demo's YOLOv8n (its Q/DQ ONNX, here the artifact), the
    FP32 ONNX of the same module, and real calibration images."""
    pytest.importorskip("onnxruntime")
    import edgeprune
    from edgeprune.api import resolve_target
    from edgeprune.calibration import CalibrationData
    from edgeprune.models import load_model
    from edgeprune.runtimes.onnxruntime import export_onnx

    checkpoint, data = demo_trained
    out = tmp_path_factory.mktemp("trt")
    t = resolve_target("jetson-orin-nano-trt-int8", imgsz=IMGSZ)
    result = edgeprune.export(checkpoint, t, calib=data, calib_images=8, out=out, stem="det")
    det = load_model(checkpoint)
    fp32 = export_onnx(det.export_module(IMGSZ).eval(), det.example_input(IMGSZ, 1), out / "fp32.onnx")
    images = list(CalibrationData.from_source(data, IMGSZ, 4, split="val", seed=1).arrays())
    return Path(result.details["onnx"]), fp32, images, det.module.model[-1].nc


def test_the_qdq_onnx_passes_the_full_onnx_checker(qdq):
    import onnx

    path = qdq[0]
    onnx.checker.check_model(str(path), full_check=True)  # raises on an invalid model
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops


def test_polygraphy_finds_the_qdq_onnx_within_tolerance_of_fp32(qdq):
    pytest.importorskip("polygraphy")
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator, CompareFunc, IterationResult

    path, fp32, images, nc = qdq
    runners = [OnnxrtRunner(SessionFromOnnx(str(fp32))), OnnxrtRunner(SessionFromOnnx(str(path)))]
    results = Comparator.run(runners, data_loader=[{"images": x} for x in images])

    def parts(result):  # one output (1, 4 + nc, anchors) -> boxes and class scores, compared apart
        (out,) = (v for _, v in result.items())
        split = {"boxes": out[:, :4], "scores": out[:, 4 : 4 + nc]}
        return IterationResult(outputs=split, runtime=result.runtime, runner_name=result.runner_name)

    results = Comparator.postprocess(results, parts)
    compare = CompareFunc.simple(
        check_error_stat="median", atol={"boxes": BOX_MEDIAN_ATOL_PX, "scores": SCORE_MEDIAN_ATOL}, rtol=0.0
    )
    assert bool(Comparator.compare_accuracy(results, compare_func=compare))
    ref_scores = np.stack([r["scores"] for r in results[0][1]])
    assert ref_scores.max() > 0.5  # the images have detections: the scores are not trivially equal
