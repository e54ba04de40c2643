"""Generic CNNs through the same API: torchvision classifiers and detectors, built without weights."""

import pytest
import torch

pytest.importorskip("torchvision")

from edgeprune.models import load_model  # noqa: E402
from edgeprune.models.torchvision import pickled_modules  # noqa: E402
from edgeprune.pruning import PruneConfig, prune_detector  # noqa: E402

CLASSIFIERS = ["resnet18", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "regnet_y_400mf"]
SLOW_CLASSIFIERS = ["resnet50", "regnet_x_400mf", "mobilenet_v3_small"]
DETECTORS = ["ssdlite320_mobilenet_v3_large"]
SLOW_DETECTORS = ["fasterrcnn_mobilenet_v3_large_320_fpn"]


def _run(det, x):
    with torch.no_grad():
        return det.module.eval()(*x) if isinstance(x, tuple) else det.module.eval()(x)


def _check(name, tmp_path, imgsz):
    torch.manual_seed(0)
    det = load_model(f"torchvision:{name}", nc=7)
    x = det.example_input(imgsz)
    before = _run(det, x)
    report = prune_detector(det, PruneConfig(ratio=0.5, round_to=8), imgsz=imgsz)
    after = _run(det, x)
    if isinstance(before, torch.Tensor):
        assert after.shape == before.shape == (1, 7)
    else:  # detector: list of dicts with boxes/scores/labels
        assert set(after[0]) == set(before[0]) and after[0]["boxes"].shape[-1] == 4
    assert report.after["macs"] <= 0.7 * report.before["macs"]
    changed = [lc for lc in report.layers if lc.after != lc.before]
    assert changed and all(lc.after % 8 == 0 for lc in changed)
    path = det.save(tmp_path / "pruned.pt")
    assert "torchvision" in pickled_modules(path)
    reloaded = load_model(str(path))
    assert reloaded.family == "torchvision"
    assert reloaded.channels() == det.channels()


def _with_slow(fast, slow):
    return [*fast, *(pytest.param(name, marks=pytest.mark.slow) for name in slow)]


@pytest.mark.parametrize("name", _with_slow(CLASSIFIERS, SLOW_CLASSIFIERS))
def test_classifier(name, tmp_path):
    _check(name, tmp_path, 64)


@pytest.mark.parametrize("name", _with_slow(DETECTORS, SLOW_DETECTORS))
def test_detector(name, tmp_path):
    _check(name, tmp_path, 320)


def test_ratio_zero_is_identity():
    det = load_model("torchvision:resnet18")
    x = torch.rand(1, 3, 64, 64)
    ref = _run(det, x)
    prune_detector(det, PruneConfig(ratio=0.0), imgsz=64)
    assert torch.equal(_run(det, x), ref)


def test_unknown_name():
    from edgeprune.errors import EdgepruneError

    with pytest.raises(EdgepruneError, match="no model 'resnet19'"):
        load_model("torchvision:resnet19")
