"""The command line as a user meets it: exit codes, messages, the prune/export/profile path."""

import json

import pytest

from conftest import run_cli

pytest.importorskip("ultralytics")


def test_usage_error_exits_2():
    r = run_cli("prune")
    assert r.returncode == 2 and "usage" in r.stderr


def test_targets_list_and_show():
    r = run_cli("targets", "list")
    assert r.returncode == 0
    for name in ("cpu-ort-fp32", "cpu-ort-int8", "jetson-orin-nano-trt-fp16", "rpi5-tflite-int8"):
        assert name in r.stdout
    r = run_cli("targets", "show", "jetson-orin-nano-trt-fp16")
    assert r.returncode == 0 and "tensorrt" in r.stdout


def test_broken_target_exits_1_with_path_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ndescription: x\ndevice: {kind: x86-cpu, name: box}\nruntime: onnxruntime\n"
        "precision: fp32\nimgsz: 640\nround_to: 8\nbudget: {latency_ms: -3, percentile: p50}\n"
    )
    for args in (("targets", "validate", str(bad)), ("profile", "x.onnx", "--target", str(bad))):
        r = run_cli(*args)
        assert r.returncode == 1
        assert str(bad) in r.stderr and "budget.latency_ms" in r.stderr
        assert "Traceback" not in r.stderr


def test_unknown_target_name():
    r = run_cli("profile", "x.onnx", "--target", "no-such-target")
    assert r.returncode == 1 and "cpu-ort-fp32" in r.stderr and "Traceback" not in r.stderr


def _target_with_budget(tmp_path, budget_ms):
    path = tmp_path / f"t{budget_ms}.yaml"
    path.write_text(
        f"name: t\ndescription: test\ndevice: {{kind: x86-cpu, name: box}}\nruntime: onnxruntime\n"
        f"precision: fp32\nimgsz: 64\nthreads: 1\nround_to: 8\n"
        f"budget: {{latency_ms: {budget_ms}, percentile: p50}}\n"
        f"profiling: {{warmup: 2, warmup_s: 0, iterations: 10, min_time_s: 0}}\n"
    )
    return path


def test_prune_export_profile_path(tmp_path):
    out = tmp_path / "out"
    r = run_cli(
        "prune",
        "yolov8n.yaml",
        "--target",
        "cpu-ort-fp32",
        "--ratio",
        "0.5",
        "--imgsz",
        "64",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert (out / "pruned.pt").is_file()
    pruned = json.loads((out / "prune.json").read_text())
    assert pruned["result"]["macs"] < 0.7 * pruned["baseline"]["macs"]

    r = run_cli(
        "export", str(out / "pruned.pt"), "--target", "cpu-ort-fp32", "--imgsz", "64", "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    onnx_path = out / "pruned.onnx"
    assert onnx_path.is_file() and "parity vs PyTorch" in r.stdout

    report_path = tmp_path / "report.json"
    r = run_cli(
        "profile",
        str(onnx_path),
        "--target",
        str(_target_with_budget(tmp_path, 10000)),
        "--json",
        str(report_path),
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(report_path.read_text())
    for key in ("edgeprune_version", "target", "budget", "baseline", "result", "passed", "environment"):
        assert key in report
    assert report["passed"] is True
    assert set(report["result"]["latency_ms"]) >= {"p50", "p90", "p99", "mean", "std"}
    assert (
        report["environment"]["runtime"].startswith("onnxruntime") and report["environment"]["threads"] == 1
    )

    r = run_cli("profile", str(onnx_path), "--target", str(_target_with_budget(tmp_path, 0.0001)))
    assert r.returncode == 3 and "FAIL" in r.stdout and "over" in r.stdout


def test_profile_rejects_wrong_artifact_kind(tmp_path):
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"\0")
    r = run_cli("profile", str(fake), "--target", "cpu-ort-fp32")
    assert r.returncode == 1 and "needs a .onnx artifact" in r.stderr


def test_export_parity_and_precision_check(tmp_path):
    from edgeprune.api import export

    res = export("yolov8n.yaml", "cpu-ort-fp32", imgsz=64, out=tmp_path)
    assert res.parity["cosine"] > 0.99999 and res.parity["max_abs_err"] < 1e-2
    from edgeprune.errors import EdgepruneError

    with pytest.raises(EdgepruneError, match="INT8 for cpu-ort-int8 needs calibration images: `calib`"):
        export("yolov8n.yaml", "cpu-ort-int8", imgsz=64, out=tmp_path)
