"""Time and peak memory of dependency-graph building + pruning at 50%, per model family.

    .venv/bin/python benchmarks/prune_speed.py [--models yolov8s.yaml yolo11s.yaml ...] [--imgsz 640]
        [--json benchmarks/results/prune_speed.json]

Each model runs in its own process, so peak memory (max RSS) is that model's alone and one
model's failure or timeout does not stop the others. The graph is traced at the adapter's small
trace size whatever --imgsz is; --imgsz only sets where params/MACs are counted. Issue #3 asks for
YOLOv8s / YOLO11s under 20 s and 3 GB on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_MODELS = [
    "yolov3-tinyu.yaml", "yolov5nu.yaml", "yolov6n.yaml", "yolov8n.yaml", "yolov8s.yaml", "yolov9t.yaml",
    "yolov9s.yaml", "yolov10n.yaml", "yolov10s.yaml", "yolo11n.yaml", "yolo11s.yaml", "yolo12n.yaml",
    "yolo12s.yaml", "yolo26n.yaml", "yolo26s.yaml", "torchvision:resnet50",
    "torchvision:ssdlite320_mobilenet_v3_large",
]  # fmt: skip


def _child(model: str, imgsz: int, ratio: float) -> None:
    """Runs in the child process: load, prune, print one JSON line."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from edgeprune.models import load_model
    from edgeprune.pruning import PruneConfig, prune_detector

    t0 = time.perf_counter()
    det = load_model(model, nc=80 if not model.startswith("torchvision:") else None)
    load_s = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = prune_detector(det, PruneConfig(ratio=ratio, round_to=8), imgsz=imgsz)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "model": model,
                "ok": True,
                "load_s": round(load_s, 2),
                "prune_s": round(report.seconds, 2),
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "rss_before_prune_mb": round(rss_before / 1024, 1),
                "params_before": report.before["params"],
                "params_after": report.after["params"],
                "macs_before": report.before["macs"],
                "macs_after": report.after["macs"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--imgsz", type=int, default=640, help="image size for the params/MACs count")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.imgsz, args.ratio)
        return

    rows = []
    header = f"{'model':<44} {'prune s':>8} {'peak MB':>8} {'params M':>16} {'GMACs':>16}"
    print(header)
    print("-" * len(header))
    for model in args.models:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            model,
            "--imgsz",
            str(args.imgsz),
            "--ratio",
            str(args.ratio),
        ]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            row = (
                json.loads(lines[-1]) if lines else {"model": model, "ok": False, "error": out.stderr[-400:]}
            )
        except subprocess.TimeoutExpired:
            row = {"model": model, "ok": False, "error": f"timeout after {args.timeout:.0f} s"}
        rows.append(row)
        if row["ok"]:
            params = f"{row['params_before'] / 1e6:.2f}->{row['params_after'] / 1e6:.2f}"
            macs = f"{row['macs_before'] / 1e9:.2f}->{row['macs_after'] / 1e9:.2f}"
            print(f"{model:<44} {row['prune_s']:>8.2f} {row['peak_rss_mb']:>8.0f} {params:>16} {macs:>16}")
        else:
            print(f"{model:<44} FAILED: {row['error'].strip().splitlines()[-1] if row['error'] else '?'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "machine": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "imgsz": args.imgsz,
        }
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
