"""Does timing two models in alternating rounds give the ratio each gives timed on its own?

    .venv/bin/python benchmarks/interleaving.py [--minutes 4] [--imgsz 160] [--json out.json]

The budget search times every candidate against the baseline in alternating rounds and the final
verdict times the model on its own, so the two must agree. Models: YOLOv8s built from its YAML
(6 classes, untrained) and the same model pruned 60% (uniform L2), exported for ``cpu-ort-fp32``
with 1 thread, like the budget benchmark's; or any two artifacts given as ``--large``/``--small``
(the budget benchmark's baseline and search result: ``WORK/final/arm0.onnx``, ``arm1.onnx``).

1. **After a switch**: the small model's latency by window of 20 calls right after the large one
   ran, median over 8 repeats (does it need time, not only calls, to reach its steady speed?).
2. **Ratio small / large**, repeated for ``--minutes``, by four protocols:
   ``alone``: each timed on its own as ``edgeprune profile`` times it (the target's settings);
   ``short``: 15 rounds of 6 calls timed straight after each switch, median of per-round ratios;
   ``pooled``: 3 rounds of 30 calls after the count-based warm-up, pooled (the search's old way);
   ``warm``: 6 rounds with the target's ``warmup_s`` and a quarter of its ``min_time_s`` per
   model and round, median of per-round ratios (the search's way now).
   Reported: median, spread and coefficient of variation of each protocol's ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--large", type=Path, help="an exported artifact to use as the large model")
    parser.add_argument("--small", type=Path, help="an exported artifact to use as the small model")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from edgeprune.api import resolve_target
    from edgeprune.exporting import export_detector
    from edgeprune.models import load_model
    from edgeprune.profiling import (
        LatencyStats,
        collect_environment,
        measure_profiled,
        sample,
        sample_interleaved,
    )
    from edgeprune.pruning import PruneConfig, prune_detector
    from edgeprune.runtimes import get_runtime

    target = resolve_target("cpu-ort-fp32", imgsz=args.imgsz).with_overrides(threads=1)
    p, runtime = target.profiling, get_runtime(target.runtime)
    calls = {}
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = {"large": args.large, "small": args.small}
        if not (args.large and args.small):
            large = load_model("yolov8s.yaml", nc=6)
            small = large.clone()
            prune_detector(small, PruneConfig(0.6, "l2", "uniform", 0.8, target.round_to), imgsz=args.imgsz)
            artifacts = {
                n: export_detector(d, target, tmp, n).artifact
                for n, d in (("large", large), ("small", small))
            }
        for name, artifact in artifacts.items():
            session = runtime.load(artifact, threads=1)
            calls[name] = session.runner()
        fl, fs = calls["large"], calls["small"]

        def run(fn, n):
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) * 1e3)
            return np.array(out)

        run(fl, 20), run(fs, 20)
        after = []
        for _ in range(8):
            run(fl, 60)
            after.append(run(fs, 300))
        by_window = np.median(np.array(after), axis=0).reshape(-1, 20).mean(axis=1)
        print("small model after the large one, ms by window of 20 calls:")
        print("  " + " ".join(f"{x:.2f}" for x in by_window))

        def per_round_ratio(rounds):
            ratios = [
                np.median(s) / np.median(r) for s, r in zip(rounds["small"], rounds["large"], strict=True)
            ]
            return float(np.median(ratios))

        protocols = {
            "alone": lambda: measure_profiled(fs, p).p50 / measure_profiled(fl, p).p50,
            "short": lambda: per_round_ratio(sample_interleaved(calls, rounds=15, warmup=0, iterations=6)),
            "pooled": lambda: _pooled(sample, fl, fs),
            "warm": lambda: per_round_ratio(
                sample_interleaved(
                    calls, rounds=6, warmup=5, warmup_s=p.warmup_s, iterations=10, min_time_s=p.min_time_s / 4
                )
            ),
        }
        ratios: dict[str, list[float]] = {k: [] for k in protocols}
        end = time.time() + args.minutes * 60
        while time.time() < end:
            for name, fn in protocols.items():
                ratios[name].append(fn())
            print("  " + "  ".join(f"{k} {v[-1]:.3f}" for k, v in ratios.items()), flush=True)

    print(f"\nratio small / large, {len(ratios['alone'])} repeats over {args.minutes:g} min:")
    print(f"{'protocol':<8} {'median':>7} {'min':>7} {'max':>7} {'cv':>6} {'vs alone':>9}")
    rows = []
    alone = float(np.median(ratios["alone"]))
    for name, xs in ratios.items():
        a = np.array(xs)
        row = {"protocol": name, "median": float(np.median(a)), "min": float(a.min()), "max": float(a.max()),
               "cv": float(a.std() / a.mean()), "vs_alone": float(np.median(a)) / alone - 1, "values": xs}  # fmt: skip
        rows.append(row)
        print(f"{name:<8} {row['median']:>7.3f} {row['min']:>7.3f} {row['max']:>7.3f} {row['cv']:>6.3f} "
              f"{row['vs_alone']:>+8.1%}")  # fmt: skip
    if args.json:
        out = {
            "imgsz": args.imgsz, "artifacts": {k: str(v) for k, v in artifacts.items()},
            "small_after_large_ms_by_20_calls": by_window.tolist(), "ratios": rows,
            "profiling": p.model_dump(), "small_stats": LatencyStats.from_samples(sample(fs, iterations=50)).to_dict(),
            "environment": collect_environment(runtime.environment(), 1),
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


def _pooled(sample, fl, fs) -> float:
    """3 rounds of 30 calls each, the count-based warm-up only, pooled: the search's old way."""
    large, small = [], []
    for _ in range(3):
        large += sample(fl, warmup=5, iterations=30)
        small += sample(fs, warmup=5, iterations=30)
    return float(np.median(small) / np.median(large))


if __name__ == "__main__":
    main()
