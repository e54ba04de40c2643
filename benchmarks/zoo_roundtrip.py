"""The zoo table: every Ultralytics family pruned at 50%, then used by plain Ultralytics.

    .venv/bin/python benchmarks/zoo_roundtrip.py [--models yolov8n.yaml ...] [--json benchmarks/results/zoo.json]

Per model: build from its YAML for the synthetic dataset's 6 classes, prune 50% (l2, uniform,
round_to 8), save, then in a fresh process that never imports edgeprune: `ultralytics.YOLO(path)`
reload, `predict`, `val` on the synthetic set and `export(format="onnx")`. Weights are untrained,
so val's mAP is ~0; the columns say whether each step works on the pruned architecture.
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

DETECT = [
    "yolov3-tinyu.yaml",
    "yolov5nu.yaml", "yolov5su.yaml", "yolov6n.yaml", "yolov6s.yaml", "yolov8n.yaml", "yolov8s.yaml",
    "yolov9t.yaml", "yolov9s.yaml", "yolov10n.yaml", "yolov10s.yaml", "yolo11n.yaml", "yolo11s.yaml",
    "yolo12n.yaml", "yolo12s.yaml", "yolo26n.yaml", "yolo26s.yaml", "rtdetr-l.yaml",
]  # fmt: skip

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
    parser.add_argument("--models", nargs="+", default=DETECT)
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
            row = run(model, work, data)
            rows.append(row)
            ok = " ".join(
                f"{'ok' if row.get(k) else 'FAIL':>6}" for k in ("reload", "predict", "val", "export")
            )
            p, m = row["params"], row["macs_640"]
            print(
                f"{model:<18} {row['prune_s']:>7.2f} {p[0] / 1e6:>6.2f}->{p[1] / 1e6:<6.2f} "
                f"{m[0] / 1e9:>6.2f}->{m[1] / 1e9:<6.2f}  {ok}  {row.get('error', '')}"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
