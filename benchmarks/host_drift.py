"""How far does this machine's speed move over minutes, and what margin would that ask for?

    .venv/bin/python benchmarks/host_drift.py [--minutes 4] [--artifact model.onnx] [--json out.json]

One artifact (default: YOLOv8s built from its YAML, 6 classes, exported for ``cpu-ort-fp32`` at
160 px with 1 thread, like the budget benchmark's baseline; or ``--artifact``, e.g. that
benchmark's ``WORK/final/arm0.onnx``) is warmed up once, then timed in windows as the budget
search times its reference in a round (a quarter of the target's ``min_time_s``), one window a
second and a half, for ``--minutes``. Printed: the windows' p10 / median / p90 / max, the
slowest and fastest 20-second stretch, and ``1 - median / p90``: the margin ``prune --margin
auto`` would have aimed under the budget had a search run in that time.
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
    parser.add_argument("--artifact", type=Path, help="an exported .onnx to time (default: YOLOv8s)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from edgeprune.api import resolve_target
    from edgeprune.exporting import export_detector
    from edgeprune.models import load_model
    from edgeprune.profiling import collect_environment, sample
    from edgeprune.pruning.search import auto_margin
    from edgeprune.runtimes import get_runtime

    target = resolve_target("cpu-ort-fp32", imgsz=160).with_overrides(threads=1)
    runtime = get_runtime(target.runtime)
    window_s = target.profiling.min_time_s / 4
    with tempfile.TemporaryDirectory() as tmp:
        artifact = (
            args.artifact or export_detector(load_model("yolov8s.yaml", nc=6), target, tmp, "m").artifact
        )
        session = runtime.load(artifact, threads=1)
        call = session.runner()
        sample(call, warmup=10, warmup_s=target.profiling.warmup_s, iterations=1)
        start, windows = time.perf_counter(), []
        while time.perf_counter() - start < args.minutes * 60:
            ms = sample(call, warmup=0, iterations=10, min_time_s=window_s)
            windows.append((round(time.perf_counter() - start, 1), float(np.median(ms))))
            time.sleep(1.0)
    t = np.array([w[0] for w in windows])
    v = np.array([w[1] for w in windows])
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    stretches = [float(np.median(v[(t >= a) & (t < a + 20)])) for a in np.arange(0, t[-1] - 19, 10)] or [p50]
    margin = auto_margin(list(v))
    print(f"{len(v)} windows of {window_s:.1f} s over {args.minutes:.1f} min ({Path(str(artifact)).name})")
    print(
        f"{'p10 ms':>8} {'median':>8} {'p90':>8} {'max':>8} {'fastest 20 s':>13} {'slowest 20 s':>13} {'auto margin':>12}"
    )
    print(
        f"{p10:>8.2f} {p50:>8.2f} {p90:>8.2f} {v.max():>8.2f} {min(stretches):>13.2f} {max(stretches):>13.2f} "
        f"{margin:>12.1%}"
    )
    if args.json:
        out = {
            "window_s": window_s, "minutes": args.minutes, "p10": p10, "p50": p50, "p90": p90, "max": float(v.max()),
            "stretch_20s_min": min(stretches), "stretch_20s_max": max(stretches), "auto_margin": margin,
            "windows": windows, "environment": collect_environment(runtime.environment(), 1),
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
