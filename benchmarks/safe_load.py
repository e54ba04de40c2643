"""Every shipped family and task still loads through the allow-list, and how much slower that is.

    .venv/bin/python benchmarks/safe_load.py [--rounds 7] [--json benchmarks/results/safe_load.json]

Per model config (detect, segment, pose, obb; YOLOv8, v10, 11, 12, 26): three checkpoints of the
same model, as edgeprune saves it, fused (``model.fuse()``, as Ultralytics' exporters leave it)
and mid-training (Ultralytics' trainer format: EMA in FP16, optimizer state, train args). Each is
loaded with ``safe_torch_load`` and with plain ``torch.load(weights_only=False)``, interleaved,
``--rounds`` times, one thread; the ratio of the medians is the cost of the restricted unpickler.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

CONFIGS = ["yolov8n.yaml", "yolov10n.yaml", "yolo11n.yaml", "yolo12n.yaml", "yolo26n.yaml",
           "yolo11n-seg.yaml", "yolo11n-pose.yaml", "yolo11n-obb.yaml", "yolov8n-seg.yaml"]  # fmt: skip


def checkpoints(config: str, folder: Path) -> dict[str, Path]:
    import torch
    from ultralytics import YOLO

    from edgeprune.models import load_model

    detector = load_model(config)
    saved = detector.save(folder / "saved.pt")
    fused_model = copy.deepcopy(YOLO(config).model).eval().fuse(verbose=False)
    torch.save({"model": fused_model, "train_args": {}, "date": "", "version": ""}, folder / "fused.pt")
    model = YOLO(config).model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    ema = copy.deepcopy(model).half()
    torch.save(
        {"epoch": 3, "best_fitness": 0.1, "model": None, "ema": ema, "updates": 120,
         "optimizer": optimizer.state_dict(), "train_args": {"imgsz": 640, "epochs": 10},
         "train_metrics": {"metrics/mAP50-95(B)": 0.1}, "date": "2026-12-02", "version": "8.4"},
        folder / "training.pt",
    )  # fmt: skip
    return {"saved": saved, "fused": folder / "fused.pt", "training": folder / "training.pt"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--configs", nargs="+", default=CONFIGS)
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "safe_load.json"))
    args = ap.parse_args()
    import torch

    from edgeprune.models.safe_load import load_ultralytics_checkpoint, safe_torch_load

    torch.set_num_threads(1)
    rows = []
    for config in args.configs:
        folder = Path(tempfile.mkdtemp())
        for kind, path in checkpoints(config, folder).items():
            model = load_ultralytics_checkpoint(path)  # loads through the allow-list, as a model
            assert model is not None
            safe, plain = [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                safe_torch_load(path)
                t1 = time.perf_counter()
                torch.load(path, map_location="cpu", weights_only=False)
                t2 = time.perf_counter()
                safe.append(t1 - t0)
                plain.append(t2 - t1)
            row = {
                "config": config, "checkpoint": kind, "mb": round(path.stat().st_size / 2**20, 2),
                "safe_ms": round(statistics.median(safe) * 1e3, 1), "plain_ms": round(statistics.median(plain) * 1e3, 1),
            }  # fmt: skip
            row["ratio"] = round(row["safe_ms"] / row["plain_ms"], 2)
            rows.append(row)
            print(row, flush=True)
    result = {
        "benchmark": "safe_load",
        "rounds": args.rounds,
        "rows": rows,
        "all_loaded": True,
        "max_ratio": max(r["ratio"] for r in rows),
        "median_ratio": statistics.median(r["ratio"] for r in rows),
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"max ratio {result['max_ratio']}, median {result['median_ratio']}; wrote {args.json}")


if __name__ == "__main__":
    main()
