"""Accuracy-controlled INT8 per runtime: plain INT8 that collapses, and what ``--max-drop`` recovers.

    .venv/bin/python benchmarks/int8_control.py --model bench-hard-arms/a/pruned.pt \
        --data bench-hard/data/data.yaml [--targets cpu-ort-int8,cpu-openvino-int8,rpi5-tflite-int8]
        [--max-drop 1.0] [--rounds 5] [--work bench-int8] [--json benchmarks/results/int8_control.json]

For each INT8 target (1 thread, the data's image size) the model is exported four ways through
``edgeprune.api.export`` and each artifact's mAP50-95 measured on the data's validation split
(every image letterboxed to the target's size) with Ultralytics' validator:

* ``fp32``: the same runtime in float (the size and latency reference);
* ``plain``: INT8 of everything, decode included (the shipped recipe with ``keep_float: []``),
  what a quantizer gives without knowing the model;
* ``recipe``: the shipped recipe (box decode and DFL in float);
* ``controlled``: ``plain``'s recipe with ``max_drop``: the float units it chose, its steps.

All four artifacts of a target are then timed in interleaved rounds in one process (p50 of the
pooled rounds; the ratios are what to read). Not run by CI.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ARTIFACTS = ("fp32", "plain", "recipe", "controlled")


def everything_recipe(target, folder: Path) -> Path:
    """The target's shipped recipe with nothing kept in float."""
    import yaml

    from edgeprune.calibration import load_recipe

    recipe = load_recipe(target.calibration).model_dump()
    recipe.update(name=f"{recipe['name']}-everything", keep_float=[], keep_float_nodes=[])
    path = folder / f"{recipe['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--targets", default="cpu-ort-int8,cpu-openvino-int8,rpi5-tflite-int8")
    parser.add_argument("--max-drop", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("bench-int8"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import edgeprune
    from edgeprune.api import export, resolve_target
    from edgeprune.profiling import collect_environment, measure_interleaved
    from edgeprune.runtimes import get_runtime

    imgsz = int(json.loads((args.data.parent / "synthetic.json").read_text())["imgsz"])
    tables = []
    for name in args.targets.split(","):
        t = resolve_target(name, imgsz=imgsz).with_overrides(threads=1)
        fp32_target = t.with_overrides(precision="fp32", calibration=None)
        work = args.work.resolve() / name
        plain_recipe = everything_recipe(t, work)
        common = {"data": args.data, "calib": args.data, "stem": "model"}
        made = {
            "fp32": export(args.model, fp32_target, out=work / "fp32", **common),
            "plain": export(args.model, t, out=work / "plain", recipe=plain_recipe, **common),
            "recipe": export(args.model, t, out=work / "recipe", **common),
            "controlled": export(
                args.model, t, out=work / "controlled", recipe=plain_recipe, max_drop=args.max_drop,
                say=lambda line, n=name: print(f"[{n}] {line}", flush=True), **common,
            ),
        }  # fmt: skip
        runtime = get_runtime(t.runtime)
        sessions = {k: runtime.load(e.artifact, threads=1) for k, e in made.items()}
        stats = measure_interleaved(
            {k: s.runner() for k, s in sessions.items()}, rounds=args.rounds, warmup=10, iterations=100,
            min_time_s=1.0,
        )  # fmt: skip
        base = made["fp32"].details["metrics"]["pytorch"]["map50_95"]
        rows = []
        for k in ARTIFACTS:
            e = made[k]
            control = e.details.get("accuracy_control")
            rows.append({
                "artifact": k, "map50_95": e.details["metrics"]["artifact"]["map50_95"],
                "size_mb": round(e.size_mb, 3), "p50_ms": stats[k].p50,
                "p50_vs_fp32": stats[k].p50 / stats["fp32"].p50,
                "float_units": control["float_units"] if control else None,
                "collapsed": e.parity.get("collapsed"),
                "accuracy_control": control,
            })  # fmt: skip
        tables.append({"target": name, "runtime": t.runtime, "pytorch_map50_95": base, "rows": rows})
        print(f"{name}: PyTorch mAP50-95 {base:.4f}")
        for r in rows:
            units = ", ".join(r["float_units"] or []) if r["float_units"] is not None else ""
            print(
                f"  {r['artifact']:<10} {r['map50_95']:.4f}  {r['size_mb']:6.2f} MB  p50 {r['p50_ms']:.2f} ms "
                f"({r['p50_vs_fp32']:.2f}x fp32)  {units}"
            )
    if args.json:
        out = {
            "edgeprune_version": edgeprune.__version__, "model": str(args.model), "data": str(args.data),
            "imgsz": imgsz, "max_drop_points": args.max_drop, "threads": 1, "rounds": args.rounds,
            "environment": collect_environment({}, 1), "targets": tables,
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
