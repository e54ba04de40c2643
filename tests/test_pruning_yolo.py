"""Pruning Ultralytics YOLO models built from their configs (tiny inputs, no weights needed)."""

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("ultralytics")

from edgeprune.models import load_model  # noqa: E402
from edgeprune.models.ultralytics import C2fSplit  # noqa: E402
from edgeprune.pruning import PruneConfig, prune_detector  # noqa: E402


def _out(det, x):
    with torch.no_grad():
        return det.inference_module().eval()(x)


@pytest.fixture
def v8n():
    torch.manual_seed(0)
    return load_model("yolov8n.yaml", nc=6)


def test_c2f_rewrite_is_exact(v8n):
    x = torch.rand(1, 3, 64, 64)
    ref = _out(v8n, x)
    with v8n.prunable() as module:
        assert any(isinstance(m, C2fSplit) for m in module.modules())
        assert torch.equal(_out(v8n, x), ref)
    assert not any(isinstance(m, C2fSplit) for m in v8n.module.modules())
    assert torch.equal(_out(v8n, x), ref)


def test_ratio_zero_changes_nothing(v8n):
    x = torch.rand(1, 3, 96, 96)
    ref = _out(v8n, x)
    report = prune_detector(v8n, PruneConfig(ratio=0.0), imgsz=64)
    assert report.before == report.after
    assert torch.equal(_out(v8n, x), ref)


def test_half_ratio_shapes_macs_alignment(v8n):
    sizes = (64, 96)
    before = {s: _out(v8n, torch.rand(1, 3, s, s)).shape for s in sizes}
    report = prune_detector(v8n, PruneConfig(ratio=0.5, round_to=8), imgsz=64)
    for s in sizes:
        assert _out(v8n, torch.rand(1, 3, s, s)).shape == before[s]
    assert report.after["macs"] <= 0.7 * report.before["macs"]
    changed = [lc for lc in report.layers if lc.after != lc.before]
    assert changed and all(lc.after % 8 == 0 for lc in changed)
    # the head's prediction convs keep their outputs (boxes and class scores)
    for conv in v8n.ignored_layers():
        if isinstance(conv, torch.nn.Conv2d):
            assert (
                report.layers[[lc.name for lc in report.layers].index(_name(v8n, conv))].after
                == conv.out_channels
            )


def _name(det, module):
    return next(n for n, m in det.module.named_modules() if m is module)


def test_dry_run_leaves_model_untouched(v8n):
    params = sum(p.numel() for p in v8n.module.parameters())
    report = prune_detector(v8n, PruneConfig(ratio=0.5), imgsz=64, dry_run=True)
    assert sum(p.numel() for p in v8n.module.parameters()) == params
    assert report.after["params"] < params
    assert "before  after" in report.table()


def test_ratio_out_of_range(v8n):
    from edgeprune.errors import EdgepruneError

    with pytest.raises(EdgepruneError, match="ratio"):
        prune_detector(v8n, PruneConfig(ratio=1.0))


def test_checkpoint_reloads_in_plain_ultralytics(v8n, tmp_path):
    prune_detector(v8n, PruneConfig(ratio=0.5, round_to=8), imgsz=64)
    x = torch.rand(1, 3, 64, 64)
    expected = _out(v8n, x)
    ckpt = v8n.save(tmp_path / "pruned.pt", {"ratio": 0.5})
    torch.save(x, tmp_path / "x.pt")
    torch.save(expected, tmp_path / "y.pt")
    # A fresh process that never imports edgeprune.
    code = f"""
import os, sys, torch
os.environ["YOLO_OFFLINE"] = "1"
from ultralytics import YOLO
m = YOLO({str(ckpt)!r}).model.eval()
y = m(torch.load({str(tmp_path / "x.pt")!r}))[0]
assert torch.allclose(y, torch.load({str(tmp_path / "y.pt")!r}), atol=1e-4), (y - torch.load({str(tmp_path / "y.pt")!r})).abs().max()
assert "edgeprune" not in sys.modules
print("ok", sum(p.numel() for p in m.parameters()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")


def test_finetune_keeps_pruned_architecture(tiny_data, tmp_path):
    det = load_model("yolov8n.yaml", nc=6)
    prune_detector(det, PruneConfig(ratio=0.5, round_to=8), imgsz=64)
    channels = det.channels()
    best = det.train(tiny_data, epochs=1, imgsz=64, batch=8, out_dir=tmp_path)
    assert best.is_file()
    assert det.channels() == channels
    metrics = det.evaluate(tiny_data, imgsz=64, batch=8)
    assert set(metrics) == {"map50_95", "map50"} and 0.0 <= metrics["map50_95"] <= 1.0


def test_batchnorm_recalibration_matches_the_pruned_layers_inputs(tiny_data):
    """After pruning, BatchNorm statistics are re-estimated from train images: the first BN's
    running mean becomes the mean of its conv's outputs over those images; weights stay as they were."""
    import torch

    from edgeprune.calibration.sources import CalibrationData

    det = load_model("yolov8n.yaml", nc=6)
    prune_detector(det, PruneConfig(ratio=0.5, round_to=8), imgsz=64)
    det.module.eval()
    weights = {
        k: v.clone()
        for k, v in det.module.state_dict().items()
        if "running" not in k and "num_batches" not in k
    }
    first = det.module.model[0]
    assert det.recalibrate_batchnorm(tiny_data, imgsz=64, images=8, batch_size=4) == 8
    assert not det.module.training  # mode restored
    assert all(torch.equal(v, det.module.state_dict()[k]) for k, v in weights.items())
    images = torch.from_numpy(next(CalibrationData.from_source(tiny_data, 64, 8, split="train").batches(8)))
    with torch.no_grad():
        expected = first.conv(images).mean(dim=(0, 2, 3))
    assert torch.allclose(first.bn.running_mean, expected, atol=1e-4)
    assert first.bn.momentum == 0.03  # Ultralytics' momentum is back for fine-tuning


def test_training_loads_data_in_processes_only_for_gpus():
    """CPU fine-tuning loads data in the training process; GPUs (one or several) get Ultralytics' workers."""
    import os

    from edgeprune.models.ultralytics import _default_workers

    assert _default_workers("cpu") == 0 and _default_workers("mps") == 0
    assert _default_workers("0") == _default_workers("0,1") == min(8, os.cpu_count() or 1)


def test_nc_mismatch_is_reported(tiny_data):
    from edgeprune.errors import EdgepruneError

    det = load_model("yolov8n.yaml")  # 80 classes
    with pytest.raises(EdgepruneError, match="80 classes"):
        det.evaluate(tiny_data, imgsz=64)


def test_missing_checkpoint_is_not_downloaded(tmp_path):
    from edgeprune.errors import EdgepruneError

    with pytest.raises(EdgepruneError, match="never downloads"):
        load_model(str(tmp_path / "yolov8n.pt"))


@pytest.mark.parametrize(
    "config,depth", [("yolov8n.yaml", False), ("yolo11n.yaml", False), ("yolo11n.yaml", True)]
)
def test_plain_ultralytics_predicts_validates_exports_pruned(config, depth, tiny_data, tmp_path):
    """What a user does next with pruned.pt, in a process that never imports edgeprune."""
    det = load_model(config, nc=6)
    if depth:  # half the repeats removed as well
        det.remove_repeats(det.repeats()[::2])
    prune_detector(det, PruneConfig(ratio=0.5, round_to=8), imgsz=64)
    ckpt = det.save(tmp_path / "pruned.pt")
    code = f"""
import sys, numpy as np
from ultralytics import YOLO
m = YOLO({str(ckpt)!r})
assert len(m.predict(np.zeros((64, 64, 3), np.uint8), imgsz=64, verbose=False)) == 1
metrics = m.val(data={str(tiny_data)!r}, imgsz=64, batch=4, plots=False, device="cpu", workers=0)
assert 0.0 <= metrics.box.map <= 1.0
onnx = m.export(format="onnx", imgsz=64)
assert str(onnx).endswith(".onnx")
assert "edgeprune" not in sys.modules
print("ok")
"""
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
