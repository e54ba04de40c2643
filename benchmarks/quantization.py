"""INT8 next to FP32 for each runtime, on the demo's YOLOv8n trained on the synthetic set.

    .venv/bin/python benchmarks/quantization.py [--threads 1] [--rounds 5] [--json benchmarks/results/quantization.json]

Per artifact: mAP50-95 on the validation split through Ultralytics' validator on the exported
file (every image letterboxed to the model's size, as a fixed-shape artifact is fed), size on
disk, p50 latency (all artifacts timed in interleaved rounds in one process, so the ratios are
measured under one load) and parity against PyTorch on a real image. INT8 artifacts are
calibrated with 128 train images by the shipped recipes; extra ORT rows fix the INT8 types
(s8s8, u8s8 with reduce_range) instead of letting the CPU choose. FP16 rows are CPU runs of FP16
artifacts (made for GPUs and ARM), there for their parity and accuracy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import edgeprune
    from edgeprune.api import resolve_target
    from edgeprune.data import make_synthetic_dataset
    from edgeprune.demo import DemoSettings, obtain_baseline
    from edgeprune.models import load_model
    from edgeprune.profiling import collect_environment, measure_interleaved
    from edgeprune.runtimes import get_runtime

    s = DemoSettings()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_synthetic_dataset(
            root / "data", n_train=s.n_train, n_val=s.n_val, imgsz=s.imgsz, seed=s.seed
        )
        ckpt = obtain_baseline(s, data, root, retrain=False, say=lambda _: None)
        for name, body in {
            "ort-s8s8": "activations: int8\nweights: int8\nreduce_range: false\n",
            "ort-u8s8-rr": "activations: uint8\nweights: int8\nreduce_range: true\n",
        }.items():
            (root / f"{name}.yaml").write_text(
                f"name: {name}\nruntime: onnxruntime\nkeep_float: [box_decode, dfl]\n{body}"
            )
        rows = [  # label, runtime, precision, recipe (None: the target's), target
            ("onnxruntime fp32", "fp32", None, "cpu-ort-fp32"),
            ("onnxruntime fp16", "fp16", None, "cpu-ort-fp32"),
            ("onnxruntime int8 (types chosen for this CPU)", "int8", None, "cpu-ort-int8"),
            ("onnxruntime int8 s8s8 (recipe override)", "int8", root / "ort-s8s8.yaml", "cpu-ort-int8"),
            ("onnxruntime int8 u8s8 reduce_range", "int8", root / "ort-u8s8-rr.yaml", "cpu-ort-int8"),
            ("openvino fp32", "fp32", None, "cpu-openvino-int8"),
            ("openvino fp16", "fp16", None, "cpu-openvino-int8"),
            ("openvino int8 (NNCF)", "int8", None, "cpu-openvino-int8"),
            ("tflite fp32", "fp32", None, "rpi5-tflite-int8"),
            ("tflite fp16", "fp16", None, "rpi5-tflite-int8"),
            ("tflite int8", "int8", None, "rpi5-tflite-int8"),
        ]
        pytorch = load_model(ckpt).evaluate(data, imgsz=s.imgsz, square=True)["map50_95"]
        results, sessions = [], {}
        for i, (label, precision, recipe, target) in enumerate(rows):
            t = resolve_target(target, imgsz=s.imgsz).with_overrides(
                precision=precision, threads=args.threads
            )
            r = edgeprune.export(
                ckpt, t, calib=data, recipe=recipe, data=data, out=root / "out", stem=f"m{i}"
            )
            results.append({
                "artifact": label,
                "runtime": t.runtime,
                "precision": precision,
                "map50_95": r.details["metrics"]["artifact"]["map50_95"],
                "size_mb": round(r.size_mb, 2),
                "max_abs_err": r.parity["max_abs_err"],
                "cosine": r.parity["cosine"],
                "quantization": r.details.get("quantization", {}),
            })  # fmt: skip
            session = get_runtime(t.runtime).load(r.artifact, threads=args.threads)
            sessions[label] = session.runner()
        stats = measure_interleaved(sessions, rounds=args.rounds, warmup=10, iterations=60)
        for row in results:
            row["p50_ms"] = round(stats[row["artifact"]].p50, 3)
            row["cv"] = round(stats[row["artifact"]].cv, 3)

    print(
        f"YOLOv8n trained on the synthetic set, {s.imgsz} px, PyTorch mAP50-95 {pytorch:.4f}, {args.threads} thread(s)"
    )
    print(
        f"{'artifact':<46} {'mAP50-95':>8} {'vs FP32':>8} {'size MB':>8} {'p50 ms':>7} {'max abs':>8} {'cosine':>9}"
    )
    fp32 = {r["runtime"]: r["map50_95"] for r in results if r["precision"] == "fp32"}
    for r in results:
        delta = (r["map50_95"] - fp32[r["runtime"]]) * 100
        print(
            f"{r['artifact']:<46} {r['map50_95']:>8.4f} {delta:>+8.2f} {r['size_mb']:>8.2f} "
            f"{r['p50_ms']:>7.3f} {r['max_abs_err']:>8.3g} {r['cosine']:>9.6f}"
        )
    if args.json:
        env = collect_environment(None, args.threads)
        out = {"imgsz": s.imgsz, "pytorch_map50_95": pytorch, "rows": results, "environment": env}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
