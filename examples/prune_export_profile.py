"""Prune a YOLO detector, export it to ONNX and check it against a target's budget, from Python.

Run from the repository root after `make install`:

    .venv/bin/python examples/prune_export_profile.py

It builds YOLOv8n from its config (no weights are downloaded), generates a small synthetic
dataset, prunes 40% of every channel group, fine-tunes two epochs, exports and profiles.
Swap in your own checkpoint (`best.pt`), data.yaml and target name to use it for real.
"""

from pathlib import Path

import edgeprune
from edgeprune.data import make_synthetic_dataset

OUT = Path("example-out")

data = make_synthetic_dataset(OUT / "data", n_train=64, n_val=16, imgsz=128)

# 1. prune (channels rounded to the target's alignment) and fine-tune; writes OUT/pruned.pt
pruned = edgeprune.prune(
    "yolov8n.yaml", "cpu-ort-fp32", ratio=0.4, data=data, epochs=2, imgsz=128, batch=16, out=OUT
)
print(pruned.report.table())
print("params", pruned.report.before["params"], "->", pruned.report.after["params"])
print("mAP50-95", pruned.baseline_metrics.get("map50_95"), "->", pruned.metrics.get("map50_95"))

# 2. export to the target's runtime; parity against PyTorch is measured
exported = edgeprune.export(pruned.checkpoint, "cpu-ort-fp32", imgsz=128, out=OUT)
print(exported.artifact, exported.parity)

# 3. profile with the target's runtime and threads; the verdict is against the target's budget
result = edgeprune.profile(exported.artifact, "cpu-ort-fp32", json_path=OUT / "report.json")
print(result.verdict.sentence())
