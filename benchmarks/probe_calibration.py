"""How many calibration images a budget-search probe needs for its latency alone.

    .venv/bin/python benchmarks/probe_calibration.py --model bench-hard-arms/a/pruned.pt \
        --data bench-hard/data/data.yaml [--targets cpu-ort-int8,cpu-openvino-int8,rpi5-tflite-int8]
        [--images 1,4,16,64] [--rounds 7] [--json benchmarks/results/probe_calibration.json]

A probe of the budget search on an INT8 target is exported, calibrated and timed; its accuracy
is never read (only the kept model gets the recipe's full calibration). Calibration sets scales
and zero points, not the graph, so latency should not depend on how many images it saw. For each
INT8 target (1 thread, the data's image size) the model is exported with each count of images
(timed: the export's seconds), the artifacts' graphs are compared (node count and op types), and
all are timed in interleaved rounds in one process: the p50 of each against the largest count's,
median over rounds. Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def graph_signature(artifact: Path) -> dict[str, object]:
    """Operation count and kinds of an artifact's graph, whatever its runtime."""
    from collections import Counter

    if artifact.suffix == ".onnx":
        import onnx

        ops = Counter(n.op_type for n in onnx.load(str(artifact), load_external_data=False).graph.node)
    elif artifact.suffix == ".xml":
        import openvino as ov

        ops = Counter(op.get_type_name() for op in ov.Core().read_model(str(artifact)).get_ops())
    else:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(artifact))
        ops = Counter(d["op_name"] for d in interpreter._get_ops_details())
    return {"ops": sum(ops.values()), "kinds": dict(sorted(ops.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--targets", default="cpu-ort-int8,cpu-openvino-int8,rpi5-tflite-int8")
    parser.add_argument("--images", default="1,4,16,64")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("bench-probe-calibration"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import numpy as np

    from edgeprune.api import export, resolve_target
    from edgeprune.profiling import LatencyStats, collect_environment
    from edgeprune.profiling.timing import profiled, sample_interleaved
    from edgeprune.runtimes import get_runtime

    counts = [int(n) for n in args.images.split(",")]
    imgsz = int(json.loads((args.data.parent / "synthetic.json").read_text())["imgsz"])
    rows, environment = [], None
    for name in args.targets.split(","):
        t = resolve_target(name, imgsz=imgsz).with_overrides(threads=1)
        made, seconds = {}, {}
        for n in counts:
            start = time.perf_counter()
            made[n] = export(args.model, t, out=args.work.resolve() / name / f"calib{n}", calib=args.data,
                             calib_images=n, stem="model")  # fmt: skip
            seconds[n] = time.perf_counter() - start
        runtime = get_runtime(t.runtime)
        environment = environment or collect_environment(runtime.environment(), 1)
        calls = {n: runtime.load(e.artifact, threads=1).runner() for n, e in made.items()}
        rounds = sample_interleaved(calls, rounds=args.rounds, **profiled(t.profiling))
        reference = max(counts)
        p50 = {n: [LatencyStats.from_samples(r).p50 for r in rs] for n, rs in rounds.items()}
        signatures = {n: graph_signature(e.artifact) for n, e in made.items()}
        for n in counts:
            rows.append({
                "target": name, "calib_images": n, "export_seconds": round(seconds[n], 2),
                "p50_ms": float(np.median(p50[n])),
                "vs_largest": float(np.median([a / b for a, b in zip(p50[n], p50[reference], strict=True)])),
                "same_graph_as_largest": signatures[n] == signatures[reference], "ops": signatures[n]["ops"],
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "model": str(args.model), "imgsz": imgsz, "rounds": args.rounds, "rows": rows, "environment": environment,
        }, indent=1) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
