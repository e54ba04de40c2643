"""Does the channel alignment of a pruned model change its latency on ONNX Runtime's CPU runtime?

    .venv/bin/python benchmarks/alignment.py [--target cpu-ort-fp32] [--calib DATA.yaml] [--imgsz 160]
        [--rounds 5] [--checkpoint PRUNED.pt ...] [--json benchmarks/results/alignment.json]

ONNX Runtime (graph optimisation level ALL, which edgeprune's runtime sets) rewrites a
convolution into MLAS's blocked NCHWc layout only when its output channels, and its input channels
unless fewer than one block, are multiples of MLAS's block size: 8 with AVX2, 16 with AVX-512F.
Any other convolution runs in plain NCHW and needs reorders around it. A model pruned to
multiples of 8 on an AVX-512 host can therefore run slower per MAC than one pruned to multiples
of 16.

Models, all YOLOv8s-family at ``--imgsz`` with 6 classes, exported for ``cpu-ort-fp32`` with 1
thread (or ``--target``, e.g. ``cpu-ort-int8`` with ``--calib``; latency does not depend on the
weights: untrained models):

- YOLOv8s (the reference) and YOLOv8n (every width a multiple of 16);
- YOLOv8s pruned by global L2 at ratios 0.3, 0.5 and 0.7 (at most 0.8 of a layer), with channel
  counts rounded to 8 and to 16;
- any ``--checkpoint`` given (e.g. a budget search's ``pruned.pt``).

All are timed together in ``--rounds`` alternating rounds with the target's profiling settings;
"x YOLOv8s" is the median over rounds of model / YOLOv8s. Reported per model: GMACs, the
convolutions whose channels are not multiples of 16, latency relative to YOLOv8s, and latency per
GMAC relative to YOLOv8s's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def off_block(detector, block: int) -> tuple[int, int]:
    """Convolutions whose output channels, or input channels (when at least a block), are not
    multiples of ``block``; and all convolutions."""
    import torch

    convs = [m for m in detector.module.modules() if isinstance(m, torch.nn.Conv2d)]
    off = [c for c in convs if c.out_channels % block or (c.in_channels >= block and c.in_channels % block)]
    return len(off), len(convs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", default="cpu-ort-fp32")
    parser.add_argument("--calib", help="calibration images of an INT8 target (folder or data.yaml)")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--checkpoint", type=Path, action="append", default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from edgeprune.api import resolve_target
    from edgeprune.exporting import export_detector
    from edgeprune.models import load_model
    from edgeprune.profiling import collect_environment, profiled, sample_interleaved
    from edgeprune.pruning import PruneConfig, prune_detector
    from edgeprune.runtimes import get_runtime

    target = resolve_target(args.target, imgsz=args.imgsz).with_overrides(threads=1)
    runtime = get_runtime(target.runtime)
    base = load_model("yolov8s.yaml", nc=6)
    models = {"YOLOv8s": base, "YOLOv8n": load_model("yolov8n.yaml", nc=6)}
    for ratio in (0.3, 0.5, 0.7):
        for round_to in (8, 16):
            det = base.clone()
            prune_detector(det, PruneConfig(ratio, "l2", "global", 0.8, round_to), imgsz=args.imgsz)
            models[f"v8s global L2 {ratio}, round_to {round_to}"] = det
    for ckpt in args.checkpoint:
        models[str(ckpt)] = load_model(ckpt)

    rows, calls = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, det) in enumerate(models.items()):
            artifact = export_detector(det, target, tmp, f"m{i}", calib=args.calib).artifact
            session = runtime.load(artifact, threads=1)
            calls[name] = session.runner()
            off, convs = off_block(det, 16)
            rows.append(
                {"model": name, "macs": det.count(args.imgsz)["macs"], "convs_off_16": off, "convs": convs}
            )
        rounds = sample_interleaved(calls, rounds=args.rounds, **profiled(target.profiling))
    ref = [float(np.median(r)) for r in rounds["YOLOv8s"]]
    base_macs = rows[0]["macs"]
    for row in rows:
        own = [float(np.median(r)) for r in rounds[row["model"]]]
        row["p50_ms"] = float(np.median([x for r in rounds[row["model"]] for x in r]))
        row["vs_v8s"] = float(np.median([o / b for o, b in zip(own, ref, strict=True)]))
        row["per_mac_vs_v8s"] = row["vs_v8s"] / (row["macs"] / base_macs)

    print(f"{target.name}, {args.imgsz} px, 1 thread, {args.rounds} alternating rounds")
    print(f"{'model':<44} {'GMACs':>6} {'convs off 16':>12} {'p50 ms':>7} {'x v8s':>6} {'per MAC':>7}")
    for r in rows:
        print(
            f"{r['model'][-44:]:<44} {r['macs'] / 1e9:>6.3f} {r['convs_off_16']:>5}/{r['convs']:<6} "
            f"{r['p50_ms']:>7.2f} {r['vs_v8s']:>6.3f} {r['per_mac_vs_v8s']:>7.2f}"
        )
    if args.json:
        out = {
            "target": target.name, "imgsz": args.imgsz, "rounds": args.rounds, "rows": rows,
            "environment": collect_environment(runtime.environment(), 1),
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
