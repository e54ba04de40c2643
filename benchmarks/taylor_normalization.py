"""Does per-group normalization of importance scores help or hurt global ranking?

    .venv/bin/python benchmarks/taylor_normalization.py --model bench-hard/yolov8s.pt \
        --data bench-hard/data/data.yaml [--macs 0.46,0.27] [--criteria taylor,taylor-mean,taylor-max,l2]
        [--json benchmarks/results/taylor_normalization.json]

For each criterion and MACs fraction: one-shot global pruning (``allocation="global"``,
``max_layer_ratio`` 0.8, widths multiples of 8) at the ratio, found by bisection (7 halvings), that
leaves the model at or under that fraction of its MACs; BatchNorm statistics re-estimated on 256
train images (as the search does after each step); mAP50-95 from Ultralytics' validator; no
fine-tuning. ``taylor`` is edgeprune's criterion (scores not normalized); ``taylor-mean`` and
``taylor-max`` are torch-pruning's ``GroupTaylorImportance`` with its ``mean`` (its default) and
``max`` normalizers. No timing: the numbers do not depend on the machine's load. Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register_variants() -> None:
    import torch_pruning as tp

    import edgeprune.pruning.options as options
    from edgeprune.pruning.importance import IMPORTANCE

    for norm in ("mean", "max"):
        IMPORTANCE.register(
            f"taylor-{norm}", lambda n=norm: tp.importance.GroupTaylorImportance(normalizer=n)
        )
    options.NEEDS_GRADIENTS = frozenset({*options.NEEDS_GRADIENTS, "taylor-mean", "taylor-max"})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--macs", default="0.46,0.27")
    parser.add_argument("--criteria", default="taylor,taylor-mean,taylor-max,l2")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    register_variants()

    from edgeprune.models import load_model
    from edgeprune.pruning import PruneConfig, prune_detector

    imgsz = int(json.loads((args.data.parent / "synthetic.json").read_text())["imgsz"])
    base = load_model(args.model)
    macs0 = base.count(imgsz)["macs"]
    base_map = base.evaluate(args.data, imgsz=imgsz)["map50_95"]
    print(f"baseline: mAP50-95 {base_map:.4f}, {macs0 / 1e9:.3f} GMACs", flush=True)
    rows = []
    for goal in [float(m) for m in args.macs.split(",")]:
        for criterion in args.criteria.split(","):
            t0 = time.perf_counter()
            lo, hi, best = 0.0, 0.8, None
            for _ in range(7):
                mid = (lo + hi) / 2
                det = base.clone()
                prune_detector(
                    det, PruneConfig(mid, criterion, "global", 0.8, 8), imgsz=imgsz, data=args.data
                )
                frac = det.count(imgsz)["macs"] / macs0
                if frac > goal:
                    lo = mid
                else:
                    hi, best = mid, (mid, det, frac)
            if best is None:
                print(f"{criterion} at {goal}: no ratio up to 0.8 gets there", flush=True)
                continue
            ratio, det, frac = best
            det.recalibrate_batchnorm(args.data, imgsz=imgsz)
            row = {
                "criterion": criterion, "macs_goal": goal, "ratio": round(ratio, 4), "macs_fraction": frac,
                "params": det.count(imgsz)["params"], "map50_95": det.evaluate(args.data, imgsz=imgsz)["map50_95"],
                "seconds": round(time.perf_counter() - t0, 1),
            }  # fmt: skip
            rows.append(row)
            print(f"{criterion:<12} MACs {frac:.3f} (ratio {ratio:.3f}, {row['params'] / 1e6:.2f}M params): "
                  f"mAP50-95 {row['map50_95']:.4f}", flush=True)  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = {"model": str(args.model), "data": str(args.data), "imgsz": imgsz, "baseline_map50_95": base_map,
               "rows": rows}  # fmt: skip
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
