"""The zoo table: every Ultralytics family pruned at 50%, then used by plain Ultralytics.

    .venv/bin/python benchmarks/zoo_roundtrip.py [--models yolov8n.yaml ...] [--no-native]
        [--json benchmarks/results/zoo_roundtrip.json]

Per model: build from its YAML for the synthetic dataset's 6 classes, prune 50% (l2, uniform,
round_to 8), save, then in a fresh process that never imports edgeprune: `ultralytics.YOLO(path)`
reload, `predict`, `val` on the synthetic set and `export(format="onnx")`. Weights are untrained,
so val's mAP is ~0; the columns say whether each step works on the pruned architecture.

Native mode (unless ``--no-native``): the same model native-pruned (every other repeat its config
can drop, then 50% of all channels, global l2, round_to 8), saved with its ``pruned.yaml``; in a
fresh process that never imports edgeprune, plain Ultralytics: ``YOLO("pruned.yaml")`` builds the
same shapes; ``YOLO("pruned.pt").train(epochs=1)`` at a zero learning rate starts from exactly
the pruned tensors (compared one by one when training starts), keeps every shape, and its first
validation scores what ``val`` scored before training (augmentation off: at a zero rate only
BatchNorm statistics move, and on augmented images they move further); then ``yolo train model=pruned.pt``
(the CLI) trains one epoch. Seg, pose and OBB models train on the synthetic set relabelled for
their task (``edgeprune.data.tasks``). The weights being untrained, both mAPs are ~0 there; the
last row does the same with the demo's trained YOLOv8n (native-pruned 20%), where the first
validation must score what the pruned model scored. ``--update`` replaces only the rows run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DETECT = [
    "yolov3-tinyu.yaml",
    "yolov5nu.yaml", "yolov5su.yaml", "yolov6n.yaml", "yolov6s.yaml", "yolov8n.yaml", "yolov8s.yaml",
    "yolov9t.yaml", "yolov9s.yaml", "yolov10n.yaml", "yolov10s.yaml", "yolo11n.yaml", "yolo11s.yaml",
    "yolo12n.yaml", "yolo12s.yaml", "yolo26n.yaml", "yolo26s.yaml", "rtdetr-l.yaml",
]  # fmt: skip
TASKS = ["yolov8n-seg.yaml", "yolov8n-pose.yaml", "yolov8n-obb.yaml", "yolo11n-seg.yaml", "yolo11n-pose.yaml"]
TASKS += ["yolo11n-obb.yaml", "yolo26n-seg.yaml", "yolo26n-pose.yaml", "yolo26n-obb.yaml"]

PLAIN_ULTRALYTICS = """
import json, sys, numpy as np
from ultralytics import RTDETR, YOLO
path, data, rtdetr = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
out = {}
m = (RTDETR if rtdetr else YOLO)(path)
out["reload"] = True
m.predict(np.zeros((64, 64, 3), np.uint8), imgsz=64, verbose=False)
out["predict"] = True
m.val(data=data, imgsz=64, batch=4, plots=False, verbose=False, device="cpu", workers=0)
out["val"] = True
out["export"] = str(m.export(format="onnx", imgsz=64)).endswith(".onnx")
assert "edgeprune" not in sys.modules
print(json.dumps(out))
"""


PLAIN_RETRAIN = Path(__file__).resolve().parents[1] / "tests" / "plain_retrain.py"  # the tests' own check


def native_row(model: str, work: Path, data: Path) -> dict:
    """Native-prune ``model`` (built from its YAML), then retrain it with plain Ultralytics."""
    from edgeprune.models import load_model

    return _native_retrained(load_model(model, nc=6), Path(model).stem, work, data, ratio=0.5, imgsz=64)


def trained_row(work: Path) -> dict:
    """The demo's trained YOLOv8n, native-pruned 20%: does Ultralytics' first validation (at a
    zero learning rate) score what it scored before training? Its data: the demo's synthetic set,
    the 100 validation images as the train split too (one quick epoch)."""
    from edgeprune.data import make_synthetic_dataset
    from edgeprune.demo import BASELINE_ASSET, DemoSettings, load_portable

    s = DemoSettings()
    data = make_synthetic_dataset(work / "demo", n_train=s.n_train, n_val=s.n_val, imgsz=s.imgsz, seed=s.seed)
    small = work / "demo-val.yaml"
    small.write_text(data.read_text().replace("train: images/train", "train: images/val"))
    det, _ = load_portable(BASELINE_ASSET)
    row = {"model": "yolov8n (the demo's trained baseline)"}
    row.update(
        _native_retrained(det, "demo", work, small, ratio=0.2, imgsz=s.imgsz, depth=False, bn_images=100)
    )
    return row


def _native_retrained(
    det: Any,
    stem: str,
    work: Path,
    data: Path,
    *,
    ratio: float,
    imgsz: int,
    depth: bool = True,
    bn_images: int = 0,
) -> dict:
    """``det`` native-pruned (every other repeat its config can drop, then ``ratio`` of all
    channels), its BatchNorm statistics re-estimated on ``bn_images`` train images (as the
    search does; 0: not), saved, and trained one epoch by plain Ultralytics (``PLAIN_RETRAIN``,
    the CLI). A zero learning rate still updates BatchNorm statistics in train mode: without
    re-estimation, the first validation scores the refreshed statistics, not the pruned model."""
    from edgeprune.pruning import PruneConfig, prune_detector

    t0 = time.perf_counter()
    units = det.repeats(native=True)[::2] if depth else []
    if units:
        det.remove_repeats(units, native=True)
    report = prune_detector(det, PruneConfig(ratio, "l2", "global", 0.8, 8, native=True), imgsz=640)
    if bn_images:
        det.recalibrate_batchnorm(data, imgsz=imgsz, images=bn_images)
    row = {
        "native_prune_s": round(time.perf_counter() - t0, 2), "native_repeats_removed": len(units),
        "native_params": report.after["params"], "native_macs_640": report.after["macs"],
    }  # fmt: skip
    ckpt = det.save(work / stem / "pruned.pt")
    if det.task != "detect":
        from edgeprune.data.tasks import task_dataset

        data = task_dataset(data, det.task, work / f"data-{det.task}")
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "0"}
    out = subprocess.run(
        [sys.executable, str(PLAIN_RETRAIN), str(ckpt), str(ckpt.with_suffix(".yaml")), str(data),
         str(work / stem / "runs"), str(imgsz), *(["rtdetr"] if stem.startswith("rtdetr") else [])],
        capture_output=True, text=True, env=env, cwd=work, timeout=1200,
    )  # fmt: skip
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    row.update(json.loads(lines[-1]) if lines else {"native_error": out.stderr.strip().splitlines()[-1:]})
    yolo = Path(sys.executable).with_name("yolo")
    cli = subprocess.run(
        [str(yolo), "train", f"model={ckpt}", f"data={data}", "epochs=1", f"imgsz={imgsz}", "batch=4", "workers=0",
         "device=cpu", "plots=False", "amp=False", f"project={work / stem / 'cli'}", "name=t", "exist_ok=True"],
        capture_output=True, text=True, env=env, cwd=work, timeout=1200,
    )  # fmt: skip
    row["yolo_train_cli"] = cli.returncode == 0
    return row


def run(model: str, work: Path, data: Path) -> dict:
    from edgeprune.models import load_model
    from edgeprune.pruning import PruneConfig, prune_detector

    det = load_model(model, nc=6)
    t0 = time.perf_counter()
    report = prune_detector(det, PruneConfig(ratio=0.5, round_to=8), imgsz=640)
    seconds = time.perf_counter() - t0
    ckpt = det.save(work / f"{Path(model).stem}-pruned.pt")
    row = {
        "model": model,
        "prune_s": round(seconds, 2),
        "params": [report.before["params"], report.after["params"]],
        "macs_640": [report.before["macs"], report.after["macs"]],
    }
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "0"}
    rtdetr = "1" if Path(model).stem.startswith("rtdetr") else "0"
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_ULTRALYTICS, str(ckpt), str(data), rtdetr],
        capture_output=True, text=True, env=env, cwd=work, timeout=600,
    )  # fmt: skip
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    row.update(json.loads(lines[-1]) if lines else {"error": out.stderr.strip().splitlines()[-1:]})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=DETECT + TASKS)
    parser.add_argument("--no-native", action="store_true")
    parser.add_argument("--no-trained", action="store_true", help="skip the demo baseline's row")
    parser.add_argument(
        "--update", action="store_true", help="replace these models' rows in --json, keep the rest"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from edgeprune.data import make_synthetic_dataset

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = make_synthetic_dataset(work / "data", n_train=8, n_val=8, imgsz=64)
        rows = []
        print(f"{'model':<18} {'prune s':>7} {'params M':>14} {'GMACs@640':>14}  reload predict val export")
        for model in args.models:
            task = Path(model).stem.rsplit("-", 1)[-1] in ("seg", "pose", "obb")
            row = {"model": model} if task else run(model, work, data)  # run() validates detection
            if not args.no_native:
                row.update(native_row(model, work, data))
            rows.append(row)
            keys = ("reload", "predict", "val", "export", "yaml_builds", "starts_from_pruned", "shapes_kept",
                    "yolo_train_cli")  # fmt: skip
            ok = " ".join(
                f"{k}={'ok' if row.get(k) else '-'}" for k in keys if k in row or "native_prune_s" in row
            )
            print(f"{model:<20} {ok}  {row.get('error', '')}{row.get('native_error', '')}", flush=True)
        if not args.no_native and not args.no_trained:
            row = trained_row(work)
            print(
                f"{row['model']}: val {row.get('val_map')} first epoch {row.get('first_epoch_map')}",
                flush=True,
            )
            rows.append(row)
    if args.json:
        if args.update and args.json.is_file():
            mine = {r["model"] for r in rows}
            rows = [r for r in json.loads(args.json.read_text()) if r["model"] not in mine] + rows
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
