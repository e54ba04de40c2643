"""Depth pruning: whole repeats removed exactly, only where shapes allow, ranked by the accuracy proxy."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("ultralytics")

from edgeprune.errors import OptionError  # noqa: E402
from edgeprune.models import load_model  # noqa: E402
from edgeprune.pruning.actions import DepthAction  # noqa: E402
from edgeprune.pruning.options import SearchConfig  # noqa: E402

from conftest import predictions  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _make_identity(bottleneck):
    """A residual Bottleneck whose branch outputs zero: x + SiLU(BN(...) = 0) = x."""
    assert bottleneck.add
    torch.nn.init.zeros_(bottleneck.cv2.bn.weight)
    torch.nn.init.zeros_(bottleneck.cv2.bn.bias)


def test_removing_a_middle_c2f_unit_cuts_its_slice_of_the_last_conv():
    torch.manual_seed(0)
    det = load_model("yolov8n.yaml", nc=6)
    block = det.module.model[4]  # C2f with two Bottlenecks
    assert len(block.m) == 2
    _make_identity(block.m[0])
    c = block.c
    with torch.no_grad():  # the unit's part of the concatenation [a, b, m0, m1] is read by nothing
        block.cv2.conv.weight[:, 2 * c : 3 * c] = 0
    x = torch.rand(1, 3, 64, 64)
    ref = predictions(det, x)
    unit = next(u for u in det.repeats() if u.name == "model.4.m.0")
    assert (unit.kind, unit.block) == ("concatenated", "C2f")
    det.remove_repeats([unit])
    assert len(block.m) == 1 and block.cv2.conv.in_channels == 3 * c
    assert torch.allclose(predictions(det, x), ref, atol=1e-5, rtol=0)


def test_removing_a_sequential_unit_lets_the_next_read_its_input():
    torch.manual_seed(0)
    det = load_model("yolov5n.yaml", nc=6)
    block = det.module.model[4]  # C3 with two Bottlenecks in a Sequential
    assert len(block.m) == 2
    _make_identity(block.m[1])
    x = torch.rand(1, 3, 64, 64)
    ref = predictions(det, x)
    det.remove_repeats([u for u in det.repeats() if u.name == "model.4.m.1"])
    assert len(block.m) == 1
    assert torch.allclose(predictions(det, x), ref, atol=1e-5, rtol=0)


def test_units_that_change_the_shape_are_not_offered():
    det = load_model("rtdetr-l.yaml", nc=6)
    names = {u.name for u in det.repeats()}
    for i, layer in enumerate(det.module.model):
        if type(layer).__name__ == "HGBlock":
            first = layer.m[0]
            changes = first.conv.in_channels != first.conv.out_channels if hasattr(first, "conv") else True
            assert (f"model.{i}.m.0" in names) != changes  # HGBlock's first unit widens c1 to cm
            assert f"model.{i}.m.1" in names


def test_a_unit_inside_a_removed_unit_goes_with_it():
    det = load_model("yolo11n.yaml", nc=6)
    units = {u.name: u for u in det.repeats()}
    outer = next(n for n, u in units.items() if u.block == "C3k2" and f"{n}.m.0" in units)
    det.remove_repeats([units[outer], units[f"{outer}.m.0"]])  # the C3k and one of its Bottlenecks
    assert outer not in {u.name for u in det.repeats()}
    predictions(det, torch.rand(1, 3, 64, 64))


def test_depth_action_removes_the_cheapest_share_of_repeats(tiny_data):
    det = load_model("yolov8n.yaml", nc=6)
    action = DepthAction(SearchConfig(speedup=2), round_to=8, imgsz=64, data=tiny_data)
    ranked = action.ranking(det)
    assert sorted(u.name for u in ranked) == sorted(u.name for u in det.repeats())
    assert action.ranking(det) is ranked  # one ranking per model a step starts from
    cand = action.make(det, 0.3)
    assert cand.removed == [u.name for u in ranked[:3]]
    assert len(cand.detector.repeats()) == len(ranked) - 3 and len(det.repeats()) == len(ranked)
    assert cand.macs < det.count(64)["macs"]
    with pytest.raises(OptionError, match="needs `data`"):
        DepthAction(SearchConfig(speedup=2), round_to=8, imgsz=64, data=None)


def test_proxy_loss_changes_nothing_and_repeats_itself(tiny_data):
    det = load_model("yolov8n.yaml", nc=6)
    det.module.train()
    state = {k: v.clone() for k, v in det.module.state_dict().items()}
    first = det.proxy_loss(tiny_data, imgsz=64)
    assert first > 0 and det.proxy_loss(tiny_data, imgsz=64) == pytest.approx(first)
    assert det.module.training
    assert all(torch.equal(v, state[k]) for k, v in det.module.state_dict().items())
