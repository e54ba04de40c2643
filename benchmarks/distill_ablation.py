"""Which distillation recovers a pruned model best? One pruned architecture, fine-tuned four ways.

    .venv/bin/python benchmarks/distill_ablation.py --teacher bench-hard/yolov8s.pt \
        --data bench-hard/data/data.yaml [--speedup 2] [--epochs 12] [--modes none,feature,output,both]
        [--work bench-distill] [--json benchmarks/results/distill_ablation.json]

1. The teacher (a trained checkpoint, e.g. ``hard_preset.py``'s YOLOv8s) is pruned once by the
   budget search to ``--speedup`` times its speed on ``cpu-ort-fp32`` (1 thread, the data's image
   size), with no fine-tuning: BatchNorm re-estimated, Taylor ranking.
2. That same pruned model is fine-tuned ``--epochs`` epochs once per mode (``none`` or a
   ``DISTILL_MODES`` mode) with the settings the search uses, and validated with Ultralytics'
   validator. Only the distillation differs between rows. Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--speedup", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--modes", default="none,feature,output,both")
    parser.add_argument("--work", type=Path, default=Path("bench-distill"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from edgeprune.api import prune_to_budget, resolve_target
    from edgeprune.models import load_model
    from edgeprune.models.distill import OutputDistillation, trainer_overrides
    from edgeprune.pruning.options import FINETUNE_RECIPE

    work = args.work.resolve()
    imgsz = int(json.loads((args.data.parent / "synthetic.json").read_text())["imgsz"])
    target = resolve_target("cpu-ort-fp32", imgsz=imgsz).with_overrides(threads=1)
    pruned_ckpt = work / "search" / "pruned.pt"
    if not pruned_ckpt.is_file():
        t0 = time.perf_counter()
        prune_to_budget(
            args.teacher, target, speedup=args.speedup, data=args.data, epochs=0, steps=3, out=work / "search",
            say=lambda line: print(line, flush=True),
        )  # fmt: skip
        print(f"[search] {time.perf_counter() - t0:.0f} s", flush=True)
    search = json.loads((work / "search" / "prune.json").read_text())
    teacher = load_model(args.teacher)
    teacher_map = teacher.evaluate(args.data, imgsz=imgsz)["map50_95"]
    pruned = load_model(pruned_ckpt)
    before = pruned.evaluate(args.data, imgsz=imgsz)["map50_95"]
    teacher_file = work / "teacher.pt"
    teacher.save(teacher_file, {"role": "distillation teacher"})
    print(f"teacher {teacher_map:.4f}; pruned before fine-tuning {before:.4f}", flush=True)

    rows = []
    for mode in args.modes.split(","):
        det = load_model(pruned_ckpt)
        extra = trainer_overrides(None if mode == "none" else mode, teacher_file)
        t0 = time.perf_counter()
        det.train(
            args.data, epochs=args.epochs, imgsz=imgsz, batch=16, out_dir=work / "runs", name=mode,
            progress=lambda line, m=mode: print(f"  {m}: {line.strip()}", flush=True), **FINETUNE_RECIPE, **extra,
        )  # fmt: skip
        seconds = round(time.perf_counter() - t0, 1)
        got = det.evaluate(args.data, imgsz=imgsz)
        rows.append({"mode": mode, **got, "train_seconds": seconds})
        kept = f" ({got['map50_95'] / teacher_map:.1%} of the teacher)" if teacher_map else ""
        print(f"{mode}: mAP50-95 {got['map50_95']:.4f}{kept}", flush=True)
    none = next((r["map50_95"] for r in rows if r["mode"] == "none"), None)
    for r in rows:
        r["vs_none_points"] = (r["map50_95"] - none) * 100 if none is not None else None
        print(f"  {r['mode']:<8} {r['map50_95']:.4f}  {r['vs_none_points']:+.2f} points vs none")
    if args.json:
        out = {
            "teacher": str(args.teacher), "data": str(args.data), "imgsz": imgsz, "speedup": args.speedup,
            "epochs": args.epochs, "teacher_map50_95": teacher_map, "pruned_before_finetune": before,
            "params": search["result"]["params"], "macs": search["result"]["macs"],
            "teacher_params": search["baseline"]["params"], "teacher_macs": search["baseline"]["macs"],
            "search_verdict": search["verdict"], "training": FINETUNE_RECIPE, "rows": rows,
            "output_distillation": asdict(OutputDistillation()),
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
