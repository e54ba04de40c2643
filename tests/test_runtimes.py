"""Runtime adapters: FP16/INT8 exports, calibration wiring, metadata, artifact accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ultralytics")

import edgeprune  # noqa: E402
from edgeprune.api import resolve_target  # noqa: E402
from edgeprune.calibration import load_recipe  # noqa: E402
from edgeprune.errors import EdgepruneError  # noqa: E402
from edgeprune.runtimes.onnxruntime import int8_types  # noqa: E402


def _target(name: str, **changes):
    return resolve_target(name, imgsz=64).with_overrides(threads=1, **changes)


@pytest.mark.parametrize(
    ("flags", "machine", "expected"),
    [
        ({"avx2", "avx512f", "avx512_vnni"}, "x86_64", ("uint8", "int8", False)),
        ({"avx2", "avx_vnni"}, "x86_64", ("uint8", "int8", False)),
        ({"avx2", "avx512f"}, "x86_64", ("uint8", "int8", True)),
        ({"asimd"}, "aarch64", ("int8", "int8", False)),
    ],
)
def test_int8_types_follow_the_cpu(flags, machine, expected):
    chosen = int8_types(load_recipe("yolo-onnxruntime-int8"), flags, machine)
    assert (chosen["activations"], chosen["weights"], chosen["reduce_range"]) == expected
    assert chosen["why"] != "set by the recipe"


def test_recipe_types_override_the_cpu(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nruntime: onnxruntime\nactivations: int8\nreduce_range: true\n")
    chosen = int8_types(load_recipe(path), {"avx512_vnni"}, "x86_64")
    assert (chosen["activations"], chosen["weights"], chosen["reduce_range"]) == ("int8", "int8", True)
    assert chosen["why"] == "set by the recipe"


def test_fp16_onnx_matches_pytorch_with_float32_io(tmp_path):
    import onnx

    fp32 = edgeprune.export("yolov8n.yaml", _target("cpu-ort-fp32"), out=tmp_path, stem="a")
    fp16 = edgeprune.export("yolov8n.yaml", _target("cpu-ort-fp32", precision="fp16"), out=tmp_path, stem="b")
    assert fp16.precision == "fp16" and fp16.parity["cosine"] > 0.999
    assert 0.4 < fp16.size_mb / fp32.size_mb < 0.6
    graph = onnx.load(str(fp16.artifact)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)


def test_int8_needs_calibration_images(tmp_path):
    with pytest.raises(EdgepruneError, match="needs calibration images: `calib`"):
        edgeprune.export("yolov8n.yaml", _target("cpu-ort-int8"), out=tmp_path)


def test_recipe_for_another_runtime_is_refused(tmp_path, tiny_data):
    with pytest.raises(EdgepruneError, match="written for openvino, not onnxruntime"):
        edgeprune.export(
            "yolov8n.yaml",
            _target("cpu-ort-int8"),
            calib=tiny_data,
            recipe="yolo-openvino-int8",
            out=tmp_path,
        )


def test_int8_onnx_is_qdq_with_the_decode_in_float_and_runs_in_ultralytics(tmp_path, tiny_data):
    import onnx

    result = edgeprune.export(
        "yolov8n.yaml", _target("cpu-ort-int8"), calib=tiny_data, calib_images=6, out=tmp_path, stem="q"
    )
    q = result.details["quantization"]
    assert result.details["calibration"]["images"] == 6 and q["float_nodes"] > 10
    model = onnx.load(str(result.artifact))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 50 and "DequantizeLinear" in ops
    producer = {o: n for n in model.graph.node for o in n.output}
    head = [n for n in model.graph.node if "/model.22/" in n.name and n.name.count("/") == 3]
    assert head and all(n.op_type not in ("QuantizeLinear", "DequantizeLinear") for n in head)
    assert producer[model.graph.output[0].name].op_type == "Concat"  # scores and boxes leave in float
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["task"] == "detect" and meta["imgsz"] == "[64, 64]" and meta["precision"] == "int8"

    code = (
        "import sys, numpy as np\nfrom ultralytics import YOLO\n"
        "r = YOLO(sys.argv[1], task='detect').predict(np.zeros((64, 64, 3), np.uint8), imgsz=64, verbose=False)\n"
        "print(len(r), sorted(r[0].names)[:2])\n"
    )
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(result.artifact)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("1 [0, 1]")


def test_openvino_fp32_and_int8(tmp_path, tiny_data):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    fp32 = edgeprune.export(
        "yolov8n.yaml", _target("cpu-openvino-int8", precision="fp32"), out=tmp_path, stem="f"
    )
    assert fp32.artifact.name == "f.xml" and fp32.artifact.parent.name == "f_openvino_model"
    assert fp32.parity["cosine"] > 0.9999 and fp32.parity["max_abs_err"] < 1e-2
    assert "names" in (fp32.artifact.parent / "metadata.yaml").read_text()
    int8 = edgeprune.export(
        "yolov8n.yaml", _target("cpu-openvino-int8"), calib=tiny_data, calib_images=6, out=tmp_path, stem="i"
    )
    assert int8.details["quantization"]["float_nodes"] > 10
    xml = int8.artifact.read_text()
    assert "FakeQuantize" in xml or "FakeConvert" in xml
    session = edgeprune.runtimes.get_runtime("openvino").load(int8.artifact, threads=1)
    (out,) = session(*session.random_inputs())
    assert out.shape == (1, 84, 84) and np.isfinite(out).all()  # 80 classes + 4, 8x8+4x4+2x2 anchors
    assert "openvino_telemetry" not in sys.modules or sys.modules["openvino_telemetry"] is None


def test_tflite_fp32_boxes_normalized_and_read_by_ultralytics(tmp_path):
    pytest.importorskip("litert_torch")
    import torch

    from edgeprune.models import load_model

    t = _target("rpi5-tflite-int8", precision="fp32")
    result = edgeprune.export("yolov8n.yaml", t, out=tmp_path, stem="m")
    assert result.parity["cosine"] > 0.9999 and result.details["boxes"] == "normalized by the image size"
    det = load_model("yolov8n.yaml")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        plain, normalized = (
            det.inference_module().eval()(x),
            det.export_module(64, normalized_boxes=True).eval()(x),
        )
    assert torch.allclose(normalized[:, :4], plain[:, :4] / 64) and torch.equal(
        normalized[:, 4:], plain[:, 4:]
    )
    from ultralytics.nn.backends.base import BaseBackend

    meta = BaseBackend.read_metadata(result.artifact)
    assert meta["imgsz"] == [64, 64] and meta["task"] == "detect" and meta["precision"] == "fp32"


# --- accuracy of the artifact, on the demo's trained YOLOv8n --------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The demo's shipped baseline (trained on the synthetic set) and that set."""
    from edgeprune.data import make_synthetic_dataset
    from edgeprune.demo import DemoSettings, obtain_baseline

    s = DemoSettings()
    root = tmp_path_factory.mktemp("trained")
    data = make_synthetic_dataset(root / "data", n_train=s.n_train, n_val=s.n_val, imgsz=s.imgsz, seed=s.seed)
    return obtain_baseline(s, data, root, retrain=False, say=lambda _: None), data, s.imgsz


@pytest.mark.parametrize("target", ["cpu-ort-int8", "cpu-openvino-int8", "rpi5-tflite-int8"])
def test_int8_artifact_map_within_one_point_of_pytorch(trained, target, tmp_path):
    ckpt, data, imgsz = trained
    t = resolve_target(target, imgsz=imgsz).with_overrides(threads=1)
    pytest.importorskip(
        {"onnxruntime": "onnxruntime", "openvino": "nncf", "tflite": "litert_torch"}[t.runtime]
    )
    result = edgeprune.export(ckpt, t, calib=data, calib_images=32, data=data, out=tmp_path)
    report = json.loads(Path(result.details["report"]).read_text())
    base, got = report["baseline"]["metrics"]["map50_95"], report["result"]["metrics"]["map50_95"]
    assert base > 0.6, "the shipped baseline should be trained"
    assert abs(got - base) < 0.01, (got, base)
    assert report["result"]["artifact"] == str(result.artifact)


# --- TensorRT: everything up to the engine build runs here; the build needs TensorRT and a GPU --------
def test_tensorrt_int8_prepares_symmetric_qdq_onnx_and_trtexec_line(tmp_path, tiny_data):
    import onnx
    from onnx import numpy_helper

    t = resolve_target("jetson-orin-nano-trt-int8", imgsz=64)
    result = edgeprune.export("yolov8n.yaml", t, calib=tiny_data, calib_images=4, out=tmp_path, stem="det")
    d = result.details
    assert d["trtexec"] == (
        "trtexec --onnx=det.onnx --saveEngine=det.engine --memPoolSize=workspace:2048M --fp16 --int8 --skipInference"
    )
    script = Path(d["trtexec_script"])
    assert script.read_text().startswith("#!/bin/sh") and "trtexec --onnx=det.onnx" in script.read_text()
    assert d["quantization"]["activations"] == "int8" and d["calibration"]["images"] == 4
    model = onnx.load(d["onnx"])
    inits = {i.name: i for i in model.graph.initializer}
    zero_points = [n.input[2] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(not numpy_helper.to_array(inits[z]).any() for z in zero_points if z in inits)
    assert {p.key for p in model.metadata_props} >= {"names", "stride", "imgsz"}
    try:
        import tensorrt  # noqa: F401
        import torch

        built_here = torch.cuda.is_available()
    except ImportError:
        built_here = False
    if built_here:
        assert result.artifact.suffix == ".engine"
    else:
        assert (
            result.artifact.suffix == ".onnx" and "build it on the device with det.trtexec.sh" in d["engine"]
        )
        assert result.parity["cosine"] > 0.9


def test_tensorrt_fp16_writes_plain_onnx_and_command(tmp_path):
    t = resolve_target("jetson-orin-nano-trt-fp16", imgsz=64)
    result = edgeprune.export("yolov8n.yaml", t, out=tmp_path, stem="m")
    assert "--fp16" in result.details["trtexec"] and "--int8" not in result.details["trtexec"]
    assert result.parity["max_abs_err"] < 1e-2


def test_engine_header_round_trip():
    from edgeprune.runtimes.tensorrt import engine_header

    meta = {"stride": 32, "names": {"0": "a"}}
    header = json.dumps(meta).encode()
    blob = len(header).to_bytes(4, "little") + header + b"\x00ENGINEBYTES"
    offset, got = engine_header(blob)
    assert got == meta and blob[offset:] == b"\x00ENGINEBYTES"
    assert engine_header(b"\xff\xff\xff\x7fraw engine") == (0, {})


def test_tensorrt_engine_build_and_run(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (it ships with JetPack on a Jetson)")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT engines need an NVIDIA GPU")
    t = resolve_target("jetson-orin-nano-trt-fp16", imgsz=64)
    result = edgeprune.export("yolov8n.yaml", t, out=tmp_path)
    assert result.artifact.suffix == ".engine" and result.parity["cosine"] > 0.999
