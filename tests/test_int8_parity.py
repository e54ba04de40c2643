"""INT8 parity that a collapse cannot fool: a trained detector quantized whole, decode included,
keeps a 0.999 cosine over its raw output while its class scores are gone."""

import json

import numpy as np
import pytest

from conftest import run_cli

pytest.importorskip("ultralytics")
pytest.importorskip("onnxruntime")

from edgeprune.models.detections import describe_collapse, detection_parity, matched  # noqa: E402

IMGSZ = 160  # the shipped demo baseline's training size


@pytest.fixture(scope="module")
def trained(demo_trained, tmp_path_factory):
    """The demo's trained YOLOv8n, calibration images of its data, and a recipe that quantizes
    everything (no part kept in float)."""
    from edgeprune.resources import data_dir

    checkpoint, data = demo_trained
    root = tmp_path_factory.mktemp("int8")
    recipe = root / "everything.yaml"
    shipped = (data_dir("calibration") / "yolo-onnxruntime-int8.yaml").read_text()
    recipe.write_text(
        shipped.replace("name: yolo-onnxruntime-int8", "name: everything").replace(
            "keep_float: [box_decode, dfl]", "keep_float: []"
        )
    )
    return checkpoint, data, recipe


def _export(trained, tmp_path, *recipe):
    checkpoint, data, _ = trained
    return run_cli(
        "export", str(checkpoint), "--target", "cpu-ort-int8", "--imgsz", str(IMGSZ), "--calib", str(data),
        "--calib-images", "8", "--out", str(tmp_path), *recipe,
    )  # fmt: skip


def test_a_collapsed_int8_export_is_flagged_though_its_cosine_is_high(trained, tmp_path):
    out = _export(trained, tmp_path, "--recipe", str(trained[2]))
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("parity vs PyTorch"))
    assert float(line.split("cosine ")[1].split()[0]) > 0.99  # what the old parity line stopped at
    assert "warning: the artifact finds 0 of the" in out.stdout and "accuracy has collapsed" in out.stdout
    assert "keep_float" in out.stdout


def test_the_shipped_recipe_keeps_the_detections(trained, tmp_path):
    out = _export(trained, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "warning" not in out.stdout
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("parity vs PyTorch"))
    assert "detections:" in line and "100% of PyTorch's" in line


def test_collapse_is_judged_on_detections_and_left_open_without_any():
    nc, anchors = 3, 50
    ref = np.zeros((1, 4 + nc, anchors), np.float32)
    ref[0, :4] = np.array([80, 80, 20, 20], np.float32)[:, None] + np.arange(anchors) * 3.0
    ref[0, 4, :5] = 0.9  # five confident anchors of class 0, far apart
    ref[0, :2, :5] = np.array([[20, 60, 100, 140, 180]] * 2)
    same = detection_parity([ref], [ref.copy()], nc)
    assert same["detections_pytorch"] == 5 and same["detection_recall"] == 1.0 and same["collapsed"] is False
    dead = ref.copy()
    dead[0, 4:] = 0.0
    gone = detection_parity([ref], [dead], nc)
    assert gone["collapsed"] is True and gone["cosine_scores"] == 0.0 and gone["cosine_boxes"] > 0.999
    assert "finds 0 of the 5 detections" in describe_collapse(gone)
    blank = ref.copy()
    blank[0, 4:] = 0.01  # nothing PyTorch would report
    assert detection_parity([blank], [dead], nc)["collapsed"] is None
    assert describe_collapse(detection_parity([blank], [dead], nc)) is None


def test_a_detection_matches_one_of_its_class_once():
    ref = np.array([[0, 0, 10, 10, 0.9, 1], [0, 0, 10, 10, 0.8, 1]], np.float32)
    assert matched(ref, np.array([[1, 1, 10, 10, 0.7, 1]], np.float32)) == 1  # one candidate, used once
    assert matched(ref, np.array([[1, 1, 10, 10, 0.7, 2]], np.float32)) == 0  # another class
    assert matched(ref, np.array([[5, 5, 15, 15, 0.7, 1]], np.float32)) == 0  # IoU 25/175 < 0.5


def test_export_report_carries_the_collapse(trained, tmp_path):
    checkpoint, data, recipe = trained
    out = _export(trained, tmp_path, "--recipe", str(recipe), "--data", str(data))
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(next(tmp_path.glob("*.export.json")).read_text())
    assert report["result"]["parity"]["collapsed"] is True
    assert report["result"]["metrics"]["map50_95"] < 0.05 <= report["baseline"]["metrics"]["map50_95"]
    assert "accuracy has collapsed" in report["warnings"][0]


def test_max_drop_recovers_the_collapsed_export(trained, tmp_path):
    """The everything-INT8 recipe loses all of mAP50-95; ``--max-drop 1`` finds the box decode
    (the concat of pixel boxes and [0, 1] scores under one scale) and keeps it in float."""
    checkpoint, data, recipe = trained
    out = _export(trained, tmp_path, "--recipe", str(recipe), "--data", str(data), "--max-drop", "1")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    report = json.loads(next(tmp_path.glob("*.export.json")).read_text())
    control = report["export"]["accuracy_control"]
    plain, final = control["steps"][0], control["steps"][-1]
    assert plain["map50_95"] < 0.05 and plain["float_units"] == []  # the collapse, measured first
    assert control["within"] and final["drop_points"] <= 1.0
    assert control["float_units"][0] == "box_decode" and control["rankings"][0][0]["unit"] == "box_decode"
    assert report["result"]["metrics"]["map50_95"] >= report["baseline"]["metrics"]["map50_95"] - 0.01
    assert report["result"]["parity"]["collapsed"] is False
    assert "accuracy control: within 1 points" in out.stdout and "box_decode" in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "base.export.json",
        "base.onnx",
        "report.html",
    ]  # no step left


def test_max_drop_needs_data_and_an_int8_target(trained, tmp_path):
    checkpoint, data, _ = trained
    out = _export(trained, tmp_path, "--max-drop", "1")
    assert (
        out.returncode == 1 and "--max-drop measures the artifact's mAP50-95: it needs --data" in out.stderr
    )
    out = run_cli("export", str(checkpoint), "--target", "cpu-ort-fp32", "--data", str(data), "--max-drop", "1",
                  "--out", str(tmp_path))  # fmt: skip
    assert out.returncode == 1 and "--max-drop controls INT8 accuracy" in out.stderr
    assert not any(tmp_path.iterdir())


def test_detection_error_reads_box_precision_that_a_cosine_misses():
    from edgeprune.models.detections import detection_error

    ref = [np.array([[0, 0, 100, 100, 0.9, 1], [200, 200, 240, 240, 0.8, 2]], np.float32)]
    assert detection_error(ref, ref) == 0.0
    assert detection_error(ref, [np.zeros((0, 6), np.float32)]) == 1.0  # all missed
    shifted = ref[0].copy()
    shifted[:, :4] += 2.0  # two pixels off: a box cosine stays above 0.9999
    err = detection_error(ref, [shifted])
    assert err == pytest.approx((0.0762 + 0.1777) / 2, abs=1e-3)  # 1 - IoU of the 100 px and 40 px boxes
    assert detection_error([np.zeros((0, 6), np.float32)], [shifted]) is None
