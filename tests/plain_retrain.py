"""Retrain a pruned checkpoint with plain Ultralytics, in a process that never imports edgeprune.

    python tests/plain_retrain.py CKPT CFG|- DATA PROJECT IMGSZ [rtdetr]

One epoch at a zero learning rate (no augmentation that moves pixels), so the first validation
must score what the pruned model scores. Prints one JSON line: ``yaml_builds`` (CFG builds the
checkpoint's shapes; None for ``-``), ``val_map`` (``val`` of the checkpoint),
``starts_from_pruned`` (training starts from exactly the pruned tensors), ``first_epoch_map``,
``shapes_kept`` (the trained checkpoint keeps every shape). Used by ``tests/test_native.py`` and
``benchmarks/zoo_roundtrip.py``.
"""

import json
import sys

import torch
from ultralytics import RTDETR, YOLO

ckpt, cfg, data, project, imgsz = *sys.argv[1:5], int(sys.argv[5])
load = RTDETR if sys.argv[6:] == ["rtdetr"] else YOLO
m = load(ckpt)
pruned = {k: v.detach().float().clone() for k, v in m.model.state_dict().items()}
shapes = {k: tuple(v.shape) for k, v in pruned.items()}
out = {
    "yaml_builds": None
    if cfg == "-"
    else {k: tuple(v.shape) for k, v in load(cfg).model.state_dict().items()} == shapes
}
val = m.val(data=data, imgsz=imgsz, batch=4, plots=False, verbose=False, device="cpu", workers=0)
out["val_map"] = float(val.results_dict["metrics/mAP50-95(B)"])


def at_start(trainer):
    sd = {k: v.float() for k, v in trainer.model.state_dict().items()}
    out["starts_from_pruned"] = sorted(sd) == sorted(pruned) and all(
        torch.equal(sd[k], v) for k, v in pruned.items()
    )


m.add_callback("on_pretrain_routine_end", at_start)
m.train(data=data, epochs=1, imgsz=imgsz, batch=4, workers=0, device="cpu", plots=False, amp=False, optimizer="SGD",
        lr0=0.0, warmup_epochs=0, warmup_bias_lr=0.0, mosaic=0.0, fliplr=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0,
        translate=0.0, scale=0.0, project=project, name="lr0", exist_ok=True, verbose=False)  # fmt: skip
out["first_epoch_map"] = float(m.trainer.metrics["metrics/mAP50-95(B)"])
last = torch.load(m.trainer.last, map_location="cpu", weights_only=False)
trained = (last.get("ema") or last["model"]).state_dict()
out["shapes_kept"] = {k: tuple(v.shape) for k, v in trained.items()} == shapes
assert "edgeprune" not in sys.modules
print(json.dumps(out))
