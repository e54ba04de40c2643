"""Does the hard synthetic preset make capacity matter? YOLOv8n and YOLOv8s trained alike on it.

    .venv/bin/python benchmarks/hard_preset.py [--epochs 40] [--imgsz N] [--n-train N] [--n-val N]
        [--work bench-hard] [--json benchmarks/results/hard_preset.json]

Both models are built from their YAML (no weights), trained from scratch for the same
``--epochs`` at the same image size on ``edgeprune data --preset hard`` (sizes default to the
preset's), with the demo's baseline training settings, and validated with Ultralytics' validator.
The preset's criterion: YOLOv8s at least 5 points of mAP50-95 above YOLOv8n. Checkpoints are kept
in ``--work`` and reused by a later run with the same settings. Not run by CI.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import replace
from pathlib import Path

CRITERION_POINTS = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--imgsz", type=int)
    parser.add_argument("--n-train", type=int)
    parser.add_argument("--n-val", type=int)
    parser.add_argument("--models", default="yolov8n.yaml,yolov8s.yaml")
    parser.add_argument("--work", type=Path, default=Path("bench-hard"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from edgeprune.data import make_synthetic_dataset
    from edgeprune.data.synthetic import PRESETS
    from edgeprune.demo import BASELINE_TRAINING, DemoSettings, train_baseline_from_scratch
    from edgeprune.models import load_model
    from edgeprune.profiling import collect_environment
    from edgeprune.runtimes import get_runtime

    preset = PRESETS.get("hard")
    imgsz, n_train, n_val = (
        args.imgsz or preset.imgsz,
        args.n_train or preset.n_train,
        args.n_val or preset.n_val,
    )
    work = args.work.resolve()
    data = make_synthetic_dataset(
        work / "data", preset="hard", n_train=n_train, n_val=n_val, imgsz=imgsz, seed=0
    )
    settings = {
        "epochs": args.epochs,
        "imgsz": imgsz,
        "n_train": n_train,
        "n_val": n_val,
        "training": BASELINE_TRAINING,
    }
    rows = []
    for model in args.models.split(","):
        name = Path(model).stem
        ckpt, record = work / f"{name}.pt", work / f"{name}.json"
        kept = json.loads(record.read_text()) if record.is_file() else {}
        if kept.get("settings") == settings and ckpt.is_file():
            print(f"{name}: reused {ckpt}", flush=True)
            det, seconds = load_model(ckpt), kept["seconds"]
        else:
            s = replace(
                DemoSettings(),
                model=model,
                base_epochs=args.epochs,
                imgsz=imgsz,
                n_train=n_train,
                n_val=n_val,
            )
            t0 = time.perf_counter()
            det = train_baseline_from_scratch(s, data, work / name, say=lambda line: print(line, flush=True))
            seconds = round(time.perf_counter() - t0, 1)
            det.save(ckpt, {"epochs": args.epochs})
            record.write_text(json.dumps({"settings": settings, "seconds": seconds}))
        metrics = det.evaluate(data, imgsz=imgsz, batch=16)
        counts = det.count(imgsz)
        curve = validation_curve(work / name / "runs" / "baseline" / "results.csv")
        rows.append(
            {"model": name, **counts, **metrics, "train_seconds": seconds, "map50_95_by_epoch": curve}
        )
        print(
            f"{name}: mAP50-95 {metrics['map50_95']:.4f}, mAP50 {metrics.get('map50', float('nan')):.4f}",
            flush=True,
        )
    gap = (rows[-1]["map50_95"] - rows[0]["map50_95"]) * 100
    print(
        f"{rows[-1]['model']} - {rows[0]['model']}: {gap:+.1f} points of mAP50-95 (criterion: >= {CRITERION_POINTS})"
    )
    if args.json:
        out = {
            "preset": "hard", **settings, "rows": rows, "gap_points": gap, "criterion_points": CRITERION_POINTS,
            "criterion_met": gap >= CRITERION_POINTS,
            "environment": collect_environment(get_runtime("onnxruntime").environment(), None),
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


def validation_curve(results_csv: Path) -> list[float]:
    """Validation mAP50-95 after every epoch, from Ultralytics' results.csv (empty if absent)."""
    if not results_csv.is_file():
        return []
    with results_csv.open() as f:
        return [float(row["metrics/mAP50-95(B)"]) for row in csv.DictReader(f, skipinitialspace=True)]


if __name__ == "__main__":
    main()
