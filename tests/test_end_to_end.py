"""End-to-end latency: letterbox, inference and decode + NMS per frame, each stage reported and the
budget judged on the total."""

import json

import numpy as np
import pytest

from conftest import run_cli

pytest.importorskip("ultralytics")
pytest.importorskip("onnxruntime")

IMGSZ = 160


@pytest.fixture(scope="module")
def artifact(demo_trained, tmp_path_factory):
    checkpoint, data = demo_trained
    out = tmp_path_factory.mktemp("e2e")
    made = run_cli("export", str(checkpoint), "-t", "cpu-ort-fp32", "--imgsz", str(IMGSZ), "--out", str(out))
    assert made.returncode == 0, made.stderr[-2000:]
    return out / "base.onnx", data


def _target(tmp_path, scope):
    target = tmp_path / f"{scope}.yaml"
    target.write_text(
        "name: e2e\ndevice: {kind: x86-cpu, name: this CPU}\nruntime: onnxruntime\nprecision: fp32\n"
        "imgsz: 160\nthreads: 1\nround_to: 8\n"
        f"budget: {{latency_ms: 1000, percentile: p50, scope: {scope}}}\n"
        "profiling: {warmup: 2, warmup_s: 0, iterations: 20, min_time_s: 0}\n"
    )
    return target


def test_profile_end_to_end_times_each_stage_and_judges_the_total(artifact, tmp_path):
    onnx, data = artifact
    report_path = tmp_path / "report.json"
    out = run_cli("profile", str(onnx), "-t", str(_target(tmp_path, "engine")), "--end-to-end", "--images",
                  str(data), "--json", str(report_path))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "end to end (4 frames; Ultralytics non_max_suppression (conf 0.25, IoU 0.7" in out.stdout
    report = json.loads(report_path.read_text())
    stages = report["end_to_end"]["stages"]
    assert list(stages) == ["preprocess", "inference", "postprocess", "total"]
    assert all(stages[s]["n"] == stages["total"]["n"] >= 20 for s in stages)  # the same frames
    assert all(stages[s]["p50"] > 0 for s in stages)
    parts = sum(stages[s]["mean"] for s in ("preprocess", "inference", "postprocess"))
    assert parts == pytest.approx(stages["total"]["mean"], rel=0.1)  # the total is the stages' span
    assert report["result"]["latency_ms"]["p50"] == stages["total"]["p50"]  # judged on the total
    assert report["budget"]["scope"] == "end_to_end"


def test_a_target_whose_budget_is_end_to_end_asks_for_frames(artifact, tmp_path):
    onnx, data = artifact
    target = _target(tmp_path, "end_to_end")
    out = run_cli("profile", str(onnx), "-t", str(target))
    assert out.returncode == 1 and "end-to-end timing letterboxes real frames: give --images" in out.stderr
    out = run_cli("profile", str(onnx), "-t", str(target), "--images", str(tmp_path / "none"))
    assert out.returncode == 1 and "none: not found" in out.stderr
    out = run_cli("profile", str(onnx), "-t", str(target), "--images", str(data))
    assert out.returncode == 0 and "end to end (4 frames" in out.stdout, out.stderr[-2000:]
    out = run_cli("prune", "yolov8n.yaml", "-t", str(target), "--speedup", "2")
    assert out.returncode == 1 and "the budget search times the engine" in out.stderr
    assert "Traceback" not in out.stderr


def test_nms_free_artifacts_are_only_filtered_by_confidence():
    from edgeprune.profiling.end_to_end import postprocessor

    post, said = postprocessor({"names": {0: "a", 1: "b"}, "end2end": True}, IMGSZ, False)
    dets = np.zeros((1, 300, 6), np.float32)
    dets[0, :3, 4] = [0.9, 0.3, 0.1]
    assert "NMS-free" in said and [len(d) for d in post([dets])] == [2]
    post, said = postprocessor({"names": {0: "a", 1: "b"}}, IMGSZ, True)
    raw = np.zeros((1, 6, 10), np.float32)
    raw[0, :4, 0] = [0.5, 0.5, 0.2, 0.2]  # normalized xywh, scaled back to pixels before NMS
    raw[0, 4, 0] = 0.9
    (kept,) = post([raw])
    assert "non_max_suppression" in said and kept.shape[0] == 1
    assert kept[0, :4].tolist() == pytest.approx([64, 64, 96, 96])


def test_an_nms_free_head_exports_final_detections_and_profiles_without_nms(tmp_path, demo_trained):
    import onnxruntime as ort

    _, data = demo_trained
    out = run_cli("export", "yolo26n.yaml", "-t", "cpu-ort-fp32", "--imgsz", str(IMGSZ), "--end2end",
                  "--out", str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    session = ort.InferenceSession(str(tmp_path / "yolo26n.onnx"))
    assert session.get_outputs()[0].shape == [1, 300, 6]  # top-k final detections of the one-to-one branch
    assert session.get_modelmeta().custom_metadata_map["end2end"] == "True"
    assert "cosine 1.000000" in out.stdout  # order-free: the top-k's order among ties is the runtime's
    prof = run_cli("profile", str(tmp_path / "yolo26n.onnx"), "-t", str(_target(tmp_path, "end_to_end")),
                   "--images", str(data))  # fmt: skip
    assert prof.returncode == 0 and "NMS-free (end2end head): confidence filter at 0.25" in prof.stdout
    refused = run_cli(
        "export", "yolov8n.yaml", "-t", "cpu-ort-fp32", "--end2end", "--out", str(tmp_path / "x")
    )
    assert refused.returncode == 1 and "its head has no one-to-one branch" in refused.stderr
