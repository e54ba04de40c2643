"""Native pruning: what it prunes, Ultralytics rebuilds from the checkpoint's own config.

Per family: the unpruned model's config, written back explicitly, rebuilds it; a native prune
(widths, then repeats) leaves a config that rebuilds every tensor shape, output widths multiples
of the alignment, attention untouched; ``pruned.yaml`` builds the same shapes. In a process that
never imports edgeprune, ``YOLO("pruned.pt").train()`` starts from exactly the pruned weights and
keeps every shape, and ``yolo train model=pruned.pt`` runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("ultralytics")

from edgeprune.errors import EdgepruneError  # noqa: E402
from edgeprune.models import load_model  # noqa: E402
from edgeprune.models.ultralytics_native import mismatches, native_yaml, rebuild  # noqa: E402
from edgeprune.pruning import PruneConfig, prune_detector  # noqa: E402

from conftest import predictions  # noqa: E402

FAMILIES = [
    "yolov3-tiny.yaml",
    "yolov5n.yaml",
    "yolov6n.yaml",
    "yolov8n.yaml",
    "yolov9t.yaml",
    "yolov10n.yaml",
]
FAMILIES += ["yolo11n.yaml", "yolo12n.yaml", "yolo26n.yaml", "rtdetr-l.yaml"]
TASKS = ["yolov8n-seg.yaml", "yolov8n-pose.yaml", "yolov8n-obb.yaml", "yolo11n-seg.yaml", "yolo26n-pose.yaml"]
SLOW = [
    "yolov9c.yaml",
    "yolov9e.yaml",
    "yolo11m.yaml",
    "yolo12l.yaml",
    "yolo26n-seg.yaml",
    "yolo11n-obb.yaml",
]

pytestmark = pytest.mark.usefixtures("one_thread")


def _build(cfg):
    torch.manual_seed(0)
    return load_model(cfg, nc=6)


def _native(det, ratio=0.5, round_to=8, depth=True):
    if depth:
        units = det.repeats(native=True)
        if units:
            det.remove_repeats(units[::2], native=True)
    return prune_detector(det, PruneConfig(ratio, "l2", "global", 0.8, round_to, native=True), imgsz=64)


@pytest.mark.parametrize("cfg", FAMILIES + TASKS + [pytest.param(c, marks=pytest.mark.slow) for c in SLOW])
def test_unpruned_config_written_back_rebuilds_the_model(cfg):
    det = _build(cfg)
    written = native_yaml(det.module, det.example_input(64))
    assert "scales" not in written and written["width_multiple"] == written["depth_multiple"] == 1.0
    assert mismatches(det.module, rebuild(det.module, written)) == []


@pytest.mark.parametrize("cfg", FAMILIES + TASKS + [pytest.param(c, marks=pytest.mark.slow) for c in SLOW])
def test_native_prune_is_rebuilt_by_its_config(cfg, tmp_path):
    det = _build(cfg)
    x = torch.rand(1, 3, 96, 96)
    shape = predictions(det, x).shape
    report = _native(det)
    assert det.native
    assert report.after["macs"] < 0.85 * report.before["macs"], (report.before, report.after)
    rebuilt = rebuild(det.module, det.module.yaml)
    assert mismatches(det.module, rebuilt) == []
    assert predictions(det, x).shape == shape
    rebuilt.load_state_dict(det.module.state_dict())  # same shapes is not enough: same function
    twin = load_model(rebuilt)
    assert torch.allclose(predictions(twin, x), predictions(det, x), atol=1e-4)
    widths = [row[3][0] for row in det.module.yaml["backbone"] + det.module.yaml["head"] if row[3]]
    assert all(w % 8 == 0 for w in widths if isinstance(w, int) and w > 8)

    ckpt = det.save(tmp_path / "pruned.pt")
    assert (tmp_path / "pruned.yaml").is_file() and load_model(ckpt).native
    from ultralytics import RTDETR, YOLO

    loader = RTDETR if cfg.startswith("rtdetr") else YOLO
    from_yaml = loader(str(tmp_path / "pruned.yaml")).model
    assert mismatches(det.module, from_yaml) == []
    reloaded = loader(str(ckpt)).model.eval()
    with torch.no_grad():
        y = reloaded(x)
    y = y[0] if isinstance(y, (tuple, list)) else y
    y = y[0] if isinstance(y, (tuple, list)) else y
    assert torch.allclose(y, predictions(det, x), atol=1e-4)


def test_alignment_is_the_coarser_of_8_and_round_to():
    det = _build("yolov8n.yaml")
    _native(det, ratio=0.5, round_to=16, depth=False)
    for row in det.module.yaml["backbone"] + det.module.yaml["head"]:
        if row[2] in ("Conv", "C2f", "SPPF"):
            assert row[3][0] % 16 == 0, row
    c2f = [m for m in det.module.modules() if type(m).__name__ == "C2f"]
    assert all(m.c % 16 == 0 or m.c == 16 for m in c2f)
    # a Bottleneck inside C2f has the block's hidden width, as Ultralytics builds it
    assert all(b.cv1.conv.out_channels == m.c for m in c2f for b in m.m)


def test_attention_loses_whole_heads_ultralytics_builds():
    det = _build("yolo11n.yaml")
    c2psa = det.module.model[10]
    assert (c2psa.c, c2psa.m[0].attn.num_heads) == (128, 2)
    _native(det, depth=False)
    attn = c2psa.m[0].attn
    # PSA blocks get c // 64 heads of c / heads channels from Ultralytics: one head of 64 left
    assert (c2psa.c, attn.num_heads, attn.head_dim) == (64, 1, 64)
    assert c2psa.cv1.conv.in_channels < 256  # the stream around it is pruned
    det12 = _build("yolo12n.yaml")
    blocks = [m for m in det12.module.modules() if type(m).__name__ == "AAttn"]
    before = [a.num_heads for a in blocks]
    _native(det12, depth=False)
    assert any(a.num_heads < n for a, n in zip(blocks, before, strict=True))
    for a in blocks:
        assert a.head_dim == 32 and a.all_head_dim == a.num_heads * 32  # ABlock: c // 32 heads


def test_free_pruned_model_is_refused(tmp_path):
    det = _build("yolov8n.yaml")
    _native(det, ratio=0.2)
    prune_detector(det, PruneConfig(0.3, "l2", "global"), imgsz=64)  # freely, after
    assert not det.native and not load_model(det.save(tmp_path / "free.pt")).native
    assert not (tmp_path / "free.yaml").exists()


def test_a_stale_native_config_goes_and_a_users_own_stays(tmp_path):
    det = _build("yolov8n.yaml")
    _native(det, ratio=0.2, depth=False)
    det.save(tmp_path / "m.pt")
    assert (tmp_path / "m.yaml").is_file()
    prune_detector(det, PruneConfig(0.2, "l2", "global"), imgsz=64)
    det.save(tmp_path / "m.pt")  # freely pruned now: the old pruned config would mislead
    assert not (tmp_path / "m.yaml").exists()
    (tmp_path / "m.yaml").write_text("nc: 6\n")  # a config the user keeps next to it
    det.save(tmp_path / "m.pt")
    assert (tmp_path / "m.yaml").read_text() == "nc: 6\n"
    with pytest.raises(EdgepruneError, match="prune the unpruned model"):
        _native(det, depth=False)


def test_torchvision_models_are_refused_with_a_reason():
    pytest.importorskip("torchvision")
    det = load_model("torchvision:resnet18")
    with pytest.raises(EdgepruneError, match="native pruning is for Ultralytics"):
        prune_detector(det, PruneConfig(0.3, "l2", "global", native=True), imgsz=64)


# --- plain Ultralytics retrains it, in a process that never imports edgeprune ----------------
PLAIN_RETRAIN = Path(__file__).with_name("plain_retrain.py")


def _retrain_in_fresh_process(ckpt: Path, data: Path, imgsz: int, tmp_path: Path) -> dict:
    """``plain_retrain.py`` on ``ckpt`` and the config saved next to it (``pruned.yaml``)."""
    out = subprocess.run(
        [sys.executable, str(PLAIN_RETRAIN), str(ckpt), str(ckpt.with_suffix(".yaml")), str(data),
         str(tmp_path / "runs"), str(imgsz)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cfg", ["yolov8n.yaml", "yolo11n.yaml", "yolov8n-seg.yaml", "yolov8n-pose.yaml"])
def test_plain_ultralytics_retrains_the_native_model(cfg, tiny_data, tmp_path):
    det = _build(cfg)
    _native(det)
    ckpt = det.save(tmp_path / "pruned.pt")
    data = tiny_data
    task = det.task
    if task != "detect":
        from edgeprune.data.tasks import task_dataset

        data = task_dataset(tiny_data, task, tmp_path / "data")
    seen = _retrain_in_fresh_process(ckpt, data, 64, tmp_path)
    assert seen["yaml_builds"] and seen["starts_from_pruned"] and seen["shapes_kept"], seen


def test_first_validation_scores_the_pruned_model(tmp_path):
    """A trained detector (the demo's baseline), native-pruned: Ultralytics' own training, at a
    zero learning rate, validates to the mAP edgeprune measured (within BatchNorm drift)."""
    from edgeprune.data import make_synthetic_dataset
    from edgeprune.demo import BASELINE_ASSET, DemoSettings, load_portable

    s = DemoSettings()
    data = make_synthetic_dataset(
        tmp_path / "demo", n_train=s.n_train, n_val=s.n_val, imgsz=s.imgsz, seed=s.seed
    )
    small = tmp_path / "small.yaml"  # train on the 100 val images: one quick epoch
    small.write_text(data.read_text().replace("train: images/train", "train: images/val"))
    det, _ = load_portable(BASELINE_ASSET)
    prune_detector(det, PruneConfig(0.2, "l2", "global", 0.8, 8, native=True), imgsz=s.imgsz)
    det.recalibrate_batchnorm(small, imgsz=s.imgsz, images=100)
    pruned_map = det.evaluate(small, imgsz=s.imgsz)["map50_95"]
    ckpt = det.save(tmp_path / "pruned.pt")
    seen = _retrain_in_fresh_process(ckpt, small, s.imgsz, tmp_path)
    assert seen["starts_from_pruned"], seen
    assert pruned_map > 0.2
    assert abs(seen["first_epoch_map"] - pruned_map) < 0.02, (seen["first_epoch_map"], pruned_map)


def test_yolo_cli_trains_the_native_checkpoint(tiny_data, tmp_path):
    det = _build("yolo26n.yaml")
    _native(det)
    ckpt = det.save(tmp_path / "pruned.pt")
    yolo = Path(sys.executable).with_name("yolo")
    args = [str(yolo), "train", f"model={ckpt}", f"data={tiny_data}", "epochs=1", "imgsz=64", "batch=8"]
    args += ["workers=0", "device=cpu", "plots=False", "amp=False", f"project={tmp_path / 'cli'}", "name=t"]
    out = subprocess.run(
        args, capture_output=True, text=True, timeout=600, env={**os.environ, "YOLO_OFFLINE": "1"}
    )
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-2000:])
    trained = load_model(tmp_path / "cli" / "t" / "weights" / "last.pt").module.state_dict()
    assert {k: v.shape for k, v in trained.items()} == {
        k: v.shape for k, v in det.module.state_dict().items()
    }


def test_budget_search_in_native_mode_keeps_every_step_rebuildable(tmp_path, tiny_data):
    from edgeprune.api import prune_to_budget, resolve_target

    fast = {"warmup": 1, "warmup_s": 0, "iterations": 5, "min_time_s": 0}
    target = resolve_target("cpu-ort-fp32", imgsz=64).with_overrides(round_to=8, threads=1, profiling=fast)
    det = _build("yolov8n.yaml")
    base = 10.0 + det.count(64)["macs"] / 1e6
    outcome = prune_to_budget(
        det, target, budget_ms=base * 0.6, steps=2, data=tiny_data, actions=("width", "depth"), native=True,
        bn_images=8, out=tmp_path, meter=lambda d, name: 10.0 + d.count(64)["macs"] / 1e6, say=lambda _: None,
    )  # fmt: skip
    assert outcome.passed and outcome.report["search"]["config"]["native"] is True
    for step in outcome.steps:
        pruned = load_model(step.checkpoint)
        assert mismatches(pruned.module, rebuild(pruned.module, pruned.module.yaml)) == []
    from ultralytics import YOLO

    final = load_model(outcome.checkpoint)
    assert mismatches(final.module, YOLO(str(outcome.checkpoint.with_suffix(".yaml"))).model) == []


def test_cli_native_prune_writes_and_names_the_config(tmp_path):
    from conftest import run_cli

    out = run_cli("prune", "yolov8n.yaml", "--target", "cpu-ort-fp32", "--ratio", "0.3", "--native",
                  "--out", str(tmp_path / "out"))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"config:     {tmp_path / 'out' / 'pruned.yaml'}" in out.stdout
    assert load_model(tmp_path / "out" / "pruned.pt").native
