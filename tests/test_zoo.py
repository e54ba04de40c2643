"""Every detection family of the installed Ultralytics prunes correctly (built from YAML, no weights).

Per family: the prunable rewrites give identical outputs, ratio 0 changes nothing, ratio 0.5
keeps output shapes at two input sizes (train-only branches and the end-to-end path included),
cuts MACs by at least 30 %, and the checkpoint reloads with plain ``ultralytics.YOLO``. The same
holds with every other repeat of every block removed first (depth, then widths).
"""

import subprocess
import sys

import pytest
import torch

pytest.importorskip("ultralytics")

from edgeprune.models import load_model  # noqa: E402
from edgeprune.models.ultralytics_blocks import HalvesSplit, OpaqueAttention, Rewrites  # noqa: E402
from edgeprune.pruning import PruneConfig, prune_detector  # noqa: E402

from conftest import predictions  # noqa: E402

# config -> the stock blocks rewritten into prunable forms (class name: count)
REWRITTEN = {
    "yolov3-tiny.yaml": {},
    "yolov5n.yaml": {},
    "yolov6n.yaml": {},
    "yolov8n.yaml": {"C2f": 8},
    "yolov9t.yaml": {"RepNCSPELAN4": 7, "ELAN1": 1},
    "yolov10n.yaml": {"C2f": 7, "C2fCIB": 1, "PSA": 1, "Attention": 1},
    "yolo11n.yaml": {"C3k2": 8, "C2PSA": 1, "Attention": 1},
    "yolo12n.yaml": {"C3k2": 3, "AAttn": 8},
    "yolo26n.yaml": {"C3k2": 8, "C2PSA": 1, "Attention": 2},
}
SMALL = ["yolov5s.yaml", "yolov6s.yaml", "yolov8s.yaml", "yolov9s.yaml", "yolov10s.yaml", "yolo11s.yaml"]
SMALL += ["yolo12s.yaml", "yolo26s.yaml", "yolov9c.yaml", "yolov9e.yaml"]  # v9 c/e: ADown, CBLinear
TASKS = ["yolov8n-seg.yaml", "yolov8n-pose.yaml", "yolov8n-obb.yaml"]
TASKS += ["yolo11n-seg.yaml", "yolo11n-pose.yaml", "yolo11n-obb.yaml"]
SLOW_TASKS = ["yolo26n-seg.yaml", "yolo26n-pose.yaml", "yolo26n-obb.yaml", "yolo12n-seg.yaml"]
SIZES = (64, 96)


pytestmark = pytest.mark.usefixtures("one_thread")


def _build(cfg):
    torch.manual_seed(0)
    return load_model(cfg, nc=6)


def _check_pruned_family(cfg, tmp_path, min_macs_cut=0.3, depth=False):
    det = _build(cfg)
    xs = {s: torch.rand(1, 3, s, s) for s in SIZES}
    before = {s: predictions(det, x).shape for s, x in xs.items()}

    if depth:  # every other repeat first, then widths on what is left
        units = det.repeats()
        assert units, f"{cfg} has no removable repeats"
        det.remove_repeats(units[::2])
        assert len(det.repeats()) < len(units)
    report = prune_detector(det, PruneConfig(ratio=0.5, round_to=8), imgsz=64)

    model = det.module
    assert not any(isinstance(m, (HalvesSplit, OpaqueAttention)) for m in model.modules())
    for s, x in xs.items():
        assert predictions(det, x).shape == before[s], f"{cfg} output shape changed at {s}px"
    assert report.after["macs"] <= (1 - min_macs_cut) * report.before["macs"], (
        cfg,
        report.before,
        report.after,
    )
    changed = [lc for lc in report.layers if lc.after != lc.before]
    assert changed and all(lc.after % 8 == 0 for lc in changed)

    head = model.model[-1]
    model.train()  # training-only branches (one2one, Pose26 sigma, Proto26 semantic) still fit
    model(torch.rand(2, 3, 64, 64))
    model.eval()
    if getattr(head, "one2one_cv2", None) is not None:  # the end-to-end (NMS-free) path
        head.end2end = True
        try:
            out = predictions(det, xs[64])
            assert out.shape[:2] == (1, min(head.max_det, before[64][-1]))
        finally:
            head.end2end = False

    from ultralytics import YOLO

    ckpt = det.save(tmp_path / "pruned.pt")
    reloaded = YOLO(str(ckpt)).model.eval()
    with torch.no_grad():
        y = reloaded(xs[96])
    y = y[0] if isinstance(y, (tuple, list)) else y
    y = y[0] if isinstance(y, (tuple, list)) else y
    assert torch.allclose(y, predictions(det, xs[96]), atol=1e-4)
    return det, report


# --- the rewrites are exact ------------------------------------------------------------------
@pytest.mark.parametrize("cfg", sorted(REWRITTEN))
def test_rewrites_are_exact(cfg):
    det = _build(cfg)
    x = torch.rand(1, 3, 96, 96)
    ref = predictions(det, x)
    with det.prunable():
        assert det._rewrites.summary() == REWRITTEN[cfg]
        assert torch.allclose(predictions(det, x), ref, atol=1e-5, rtol=0)
    assert torch.equal(predictions(det, x), ref)  # merged back: the very same stock blocks


def test_ratio_zero_changes_nothing():
    det = _build("yolo11n.yaml")
    x = torch.rand(1, 3, 96, 96)
    ref = predictions(det, x)
    report = prune_detector(det, PruneConfig(ratio=0.0), imgsz=64)
    assert report.before == report.after
    assert torch.equal(predictions(det, x), ref)


# --- every family prunes ---------------------------------------------------------------------
@pytest.mark.parametrize("cfg", sorted(REWRITTEN))
def test_family_prunes(cfg, tmp_path):
    _check_pruned_family(cfg, tmp_path)


# yolov3-tiny has no repeated blocks
@pytest.mark.parametrize("cfg", sorted(set(REWRITTEN) - {"yolov3-tiny.yaml"}) + TASKS[:3])
def test_family_loses_repeats_and_widths(cfg, tmp_path):
    _check_pruned_family(cfg, tmp_path, depth=True)


@pytest.mark.parametrize("cfg", TASKS)
def test_task_heads_prune(cfg, tmp_path):
    det, _ = _check_pruned_family(cfg, tmp_path)
    head = det.module.model[-1]
    # masks, keypoints and angles keep their channel counts
    for name in ("cv4", "cv4_kpts"):
        for branch in getattr(head, name, []):
            last = branch[-1] if isinstance(branch, torch.nn.Sequential) else branch
            if isinstance(last, torch.nn.Conv2d):
                assert last.out_channels == getattr(head, "nm", getattr(head, "nk", getattr(head, "ne", 0)))
    if hasattr(head, "proto"):
        assert head.proto.cv3.conv.out_channels == head.nm


@pytest.mark.slow
@pytest.mark.parametrize("cfg", SMALL + SLOW_TASKS)
def test_small_sizes_and_yolo26_tasks_prune(cfg, tmp_path):
    _check_pruned_family(cfg, tmp_path)


@pytest.mark.slow
def test_rtdetr_prunes_with_encoder_and_decoder_whole(tmp_path):
    """RT-DETR: backbone and neck pruned; AIFI (encoder) and the transformer decoder kept whole."""
    det = _build("rtdetr-l.yaml")
    x = torch.rand(1, 3, 64, 64)
    ref = predictions(det, x)
    with det.prunable():
        assert det._rewrites.summary() == {"AIFI": 1}
        assert torch.allclose(predictions(det, x), ref, atol=1e-5, rtol=0)
    head = det.module.model[-1]
    decoder = {n: p.shape for n, p in head.named_parameters() if not n.startswith("input_proj")}
    det, report = _check_pruned_family("rtdetr-l.yaml", tmp_path, min_macs_cut=0.25)
    head = det.module.model[-1]
    assert {n: p.shape for n, p in head.named_parameters() if not n.startswith("input_proj")} == decoder


@pytest.mark.slow
def test_cblinear_rewrite_is_exact():
    det = _build("yolov9e.yaml")
    x = torch.rand(1, 3, 64, 64)
    ref = predictions(det, x)
    with det.prunable():
        assert det._rewrites.summary()["CBLinear"] == 5
        assert torch.allclose(predictions(det, x), ref, atol=1e-5, rtol=0)
    assert torch.equal(predictions(det, x), ref)


# --- attention: what is pruned and what is kept whole ----------------------------------------
def test_psa_attention_loses_whole_heads_with_its_stream():
    det = _build("yolo11n.yaml")
    c2psa = det.module.model[10]
    attn, ffn = c2psa.m[0].attn, c2psa.m[0].ffn
    heads, hd, kd, c, hidden = attn.num_heads, attn.head_dim, attn.key_dim, c2psa.c, ffn[0].conv.out_channels
    assert (heads, hd, c) == (2, 64, 128)
    prune_detector(det, PruneConfig(ratio=0.5, round_to=8), imgsz=64)
    assert (attn.num_heads, attn.head_dim, attn.key_dim) == (1, hd, kd)  # one head gone, heads unchanged
    assert c2psa.c == attn.num_heads * hd == attn.qkv.conv.in_channels == attn.proj.conv.out_channels
    assert attn.qkv.conv.out_channels == attn.num_heads * (2 * kd + hd)
    assert attn.pe.conv.out_channels == attn.pe.conv.groups == attn.proj.conv.in_channels == c2psa.c
    assert c2psa.cv1.conv.out_channels == 2 * c2psa.c  # both halves, equal
    assert ffn[0].conv.out_channels < hidden  # the feed-forward hidden width is pruned too


def test_area_attention_loses_whole_heads_with_its_stream():
    det = _build("yolo12n.yaml")
    blocks = [m for m in det.module.modules() if type(m).__name__ == "AAttn"]
    before = [(a.num_heads, a.head_dim) for a in blocks]
    prune_detector(det, PruneConfig(ratio=0.5, round_to=8), imgsz=64)
    assert any(a.num_heads < heads for a, (heads, _) in zip(blocks, before, strict=True))
    for a, (_, head_dim) in zip(blocks, before, strict=True):
        assert a.head_dim == head_dim and a.all_head_dim == a.num_heads * head_dim
        assert a.qkv.conv.out_channels == 3 * a.all_head_dim == 3 * a.proj.conv.in_channels


@pytest.mark.parametrize("cfg", ["yolo11n.yaml", "yolo12n.yaml"])
def test_keep_heads_keeps_every_attention_whole_and_prunes_the_rest(cfg):
    det = _build(cfg)
    blocks = [m for m in det.module.modules() if type(m).__name__ in ("Attention", "AAttn")]
    before = [(a.num_heads, a.qkv.conv.weight.shape, a.proj.conv.weight.shape) for a in blocks]
    macs = det.count(64)["macs"]
    report = prune_detector(det, PruneConfig(ratio=0.5, round_to=8, keep_heads=True), imgsz=64)
    assert [(a.num_heads, a.qkv.conv.weight.shape, a.proj.conv.weight.shape) for a in blocks] == before
    assert det.count(64)["macs"] < 0.8 * macs  # everything else was still pruned
    assert "attention heads kept" in report.config.describe()
    det.module(torch.rand(1, 3, 64, 64))


def test_cli_keep_heads(tmp_path):
    from conftest import run_cli

    out = run_cli("prune", "yolo11n.yaml", "--target", "cpu-ort-fp32", "--ratio", "0.5", "--keep-heads",
                  "--out", str(tmp_path / "out"))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "attention heads kept" in out.stdout
    attn = load_model(tmp_path / "out" / "pruned.pt").module.model[10].m[0].attn
    assert attn.num_heads == 2 and attn.qkv.conv.in_channels == 128


@pytest.mark.parametrize("kind", ["Attention", "AAttn"])
def test_the_least_important_head_goes_and_the_rest_compute_as_before(kind):
    """A head whose projection columns are zero contributes nothing: it is ranked last, removed
    with its slices of qkv, pe and proj, and on the stream channels kept the pruned module
    computes exactly what the stock one did (removed stream channels fed zeros)."""
    from ultralytics.nn.modules.block import AAttn, Attention

    from edgeprune.errors import EdgepruneError

    torch.manual_seed(0)
    attn = (Attention(128, num_heads=2) if kind == "Attention" else AAttn(64, num_heads=2)).eval()
    c, hd = attn.qkv.conv.in_channels, attn.head_dim
    with torch.no_grad():
        attn.proj.conv.weight[:, :hd] = 0  # head 0 silenced
    x = torch.rand(1, c, 4, 4)
    stream = list(range(c - hd, c))  # the stream's last head-width of channels go
    x[:, stream] = 0
    with torch.no_grad():
        ref = attn(x)
    opaque = OpaqueAttention(attn, stream_prunable=True)
    assert int(opaque.head_scores().argmin()) == 0
    with pytest.raises(EdgepruneError, match=f"whole heads of {hd} channels"):
        opaque.remove_heads(list(range(10)))
    opaque.remove_heads(stream)
    assert attn.num_heads == 1 and attn.head_dim == hd
    kept = [i for i in range(c) if i not in stream]
    with torch.no_grad():
        out = attn(x[:, kept])
    assert torch.allclose(out, ref[:, kept], atol=1e-5)


def test_opaque_attention_gradients_match_stock():
    """The one-node attention used while pruning back-propagates like the stock module."""
    from ultralytics.nn.modules.block import C2PSA

    torch.manual_seed(0)
    block = C2PSA(128, 128).eval()
    x = torch.rand(1, 128, 4, 4, requires_grad=True)
    block(x).square().sum().backward()
    ref_x, ref_p = x.grad.clone(), {n: p.grad.clone() for n, p in block.named_parameters()}
    x.grad = None
    block.zero_grad(set_to_none=True)
    rewrites = Rewrites().apply(block)
    block(x).square().sum().backward()
    assert torch.allclose(x.grad, ref_x, atol=1e-6)
    rewrites.undo()
    # the halves (cv_a, cv_b) got the gradients of cv1; all other parameters match one to one
    assert list(ref_p) == [n for n, _ in block.named_parameters()]  # same modules, same order
    for name, p in block.named_parameters():
        if not name.startswith("cv1."):
            assert torch.allclose(p.grad, ref_p[name], atol=1e-6), name


def test_unequal_halves_are_refused():
    from edgeprune.errors import EdgepruneError

    det = _build("yolov8n.yaml")
    with pytest.raises(EdgepruneError, match="different widths"):
        with det.prunable() as module:
            import torch_pruning as tp

            split = next(m for m in module.modules() if isinstance(m, HalvesSplit))
            tp.prune_conv_out_channels(split.cv_a.conv, [0])


# --- reload in a process that never imports edgeprune ------------------------------------------
@pytest.mark.parametrize("cfg", ["yolo26n.yaml", pytest.param("yolo12n.yaml", marks=pytest.mark.slow)])
def test_pruned_checkpoint_loads_in_fresh_process(cfg, tmp_path):
    det = _build(cfg)
    det.remove_repeats(det.repeats()[::2])  # depth too
    prune_detector(det, PruneConfig(ratio=0.5, round_to=8), imgsz=64)
    x = torch.rand(1, 3, 64, 64)
    torch.save((x, predictions(det, x)), tmp_path / "xy.pt")
    ckpt = det.save(tmp_path / "pruned.pt")
    code = f"""
import os, sys, torch
os.environ["YOLO_OFFLINE"] = "1"
from ultralytics import YOLO
m = YOLO({str(ckpt)!r}).model.eval()
x, y = torch.load({str(tmp_path / "xy.pt")!r})
assert torch.allclose(m(x)[0], y, atol=1e-4)
m.fuse()
m(x)
assert "edgeprune" not in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
