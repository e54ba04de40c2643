"""Engine-only against end-to-end latency: what letterbox, decode and NMS add per frame.

    .venv/bin/python benchmarks/end_to_end.py [--models yolo11n,yolo26n] [--epochs 40]
        [--runtimes onnxruntime,openvino] [--rounds 3] [--work bench-e2e]
        [--json benchmarks/results/end_to_end.json]

Each model is trained from its Ultralytics config on the synthetic set (160 px, the demo's
baseline recipe, cached in ``--work``): NMS cost depends on how many boxes pass the confidence
threshold, which an untrained model does not produce. Each is exported FP32 to every runtime (an
NMS-free head twice: with its one-to-many branch and NMS, and ``end2end``) and timed with 1 thread, in
``--rounds`` interleaved rounds of (engine alone, end to end) through ``edgeprune profile``'s own
code: ``measure_profiled`` on a random input for the engine, ``measure_end_to_end`` on the
validation images for the frame. Per round and model the p50s are kept; the table has their
medians. Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

IMGSZ = 160
PROFILING = {"warmup": 10, "warmup_s": 0.5, "iterations": 200, "min_time_s": 2.0}


def trained(name: str, data: Path, epochs: int, work: Path) -> Path:
    from edgeprune.models import load_model

    path = work / f"{name}-{epochs}ep.pt"
    if not path.is_file():
        import yaml

        det = load_model(f"{name}.yaml", nc=int(yaml.safe_load(data.read_text())["nc"]))
        from edgeprune.demo import BASELINE_TRAINING

        det.train(data, epochs=epochs, imgsz=IMGSZ, out_dir=work / "runs", name=name, **BASELINE_TRAINING)
        det.save(path, {"epochs": epochs})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="yolo11n,yolo26n")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--runtimes", default="onnxruntime,openvino")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("bench-e2e"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import edgeprune
    from edgeprune.api import export, resolve_target
    from edgeprune.calibration.sources import source_images
    from edgeprune.data import make_synthetic_dataset
    from edgeprune.models import load_model
    from edgeprune.profiling import collect_environment, measure_profiled
    from edgeprune.profiling.end_to_end import IMAGES, measure_end_to_end, postprocessor
    from edgeprune.runtimes import get_runtime

    work = args.work.resolve()
    data = work / "data" / "data.yaml"
    if not data.is_file():
        data = make_synthetic_dataset(work / "data", n_train=400, n_val=50, imgsz=IMGSZ, seed=0)
    frames = source_images(data, "val")[:IMAGES]
    base = resolve_target("cpu-ort-fp32", imgsz=IMGSZ).with_overrides(threads=1, profiling=PROFILING)
    rows = []
    for name in args.models.split(","):
        ckpt = trained(name, data, args.epochs, work)
        nms_free = getattr(load_model(ckpt).module.model[-1], "one2one_cv2", None) is not None
        for rt, end2end in [
            (rt, e) for rt in args.runtimes.split(",") for e in ((False, True) if nms_free else (False,))
        ]:
            t = base.with_overrides(runtime=rt)
            stem = f"{name}-end2end" if end2end else name
            made = export(ckpt, t, out=work / "artifacts" / rt, stem=stem, data=data, end2end=end2end)
            runtime = get_runtime(rt)
            session = runtime.load(made.artifact, threads=1)
            post, said = postprocessor(runtime.read_metadata(made.artifact), IMGSZ, runtime.normalized_boxes)
            per_round: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                engine = measure_profiled(session.runner(), t.profiling)
                e2e = measure_end_to_end(session, frames, IMGSZ, post, said, t.profiling)
                per_round.setdefault("engine", []).append(engine.p50)
                for stage, st in e2e.stages.items():
                    per_round.setdefault(stage, []).append(st.p50)
            med = {k: statistics.median(v) for k, v in per_round.items()}
            row = {
                "model": name, "runtime": rt, "end2end": end2end,
                "map50_95": made.details["metrics"]["artifact"]["map50_95"],
                "postprocess": said, "p50_ms": med, "p50_ms_per_round": per_round,
                "end_to_end_over_engine": med["total"] / med["engine"],
            }  # fmt: skip
            rows.append(row)
            print(
                f"{stem} {rt}: mAP50-95 {row['map50_95']:.4f}; engine {med['engine']:.2f} ms, end to end "
                f"{med['total']:.2f} ms (pre {med['preprocess']:.2f}, infer {med['inference']:.2f}, "
                f"post {med['postprocess']:.2f}); {row['end_to_end_over_engine']:.2f}x; {said}",
                flush=True,
            )
    if args.json:
        out = {
            "edgeprune_version": edgeprune.__version__, "imgsz": IMGSZ, "threads": 1, "rounds": args.rounds,
            "epochs": args.epochs, "profiling": PROFILING, "environment": collect_environment({}, 1), "rows": rows,
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
