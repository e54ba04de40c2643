"""Accuracy by class and by object size, from the same predictions as Ultralytics' validator's mAP.

An average mAP hides where a pruned or quantized model pays: small objects and rare classes
usually lose first. Ultralytics' validator, asked for JSON on a custom dataset, collects its
predictions and the labels in COCO form (boxes in the original image's pixels); this module hands
both to faster-coco-eval, the maintained C++ COCO evaluator Ultralytics itself uses, and reads:

* ``per_class``: AP50-95 and AP50 of each class, with its number of labelled instances;
* ``by_size``: AP50-95 of small, medium and large objects with COCO's definitions (box area under
  32², 32²-96², over 96² pixels of the original image), with their instance counts.

COCO's AP interpolates precision at 101 recall points; Ultralytics' mAP50-95 integrates the curve.
The two differ by a little on the same predictions; ``coco_map50_95`` is kept beside them so a
reader can see that the breakdown adds up to its own total.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

# COCO's object-size ranges, in pixels² of the original image (faster-coco-eval's defaults too).
SIZES = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, float("inf"))}


def validate_with_breakdown(args: dict[str, Any], model: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run Ultralytics' DetectionValidator with ``args`` (and ``model`` when validating a module)
    and return its stats and the breakdown of the same predictions."""
    from ultralytics.models.yolo.detect import DetectionValidator

    class _Validator(DetectionValidator):  # type: ignore[misc]
        breakdown: dict[str, Any] = {}

        def init_metrics(self, model: Any) -> None:
            super().init_metrics(model)
            if (
                self.is_coco or self.is_lvis
            ):  # their JSON path reads an annotations file: take the labels read here
                self.is_coco = self.is_lvis = False
                self.class_map = list(range(1, len(model.names) + 1))
                self.is_custom_json = self.build_gdict = True
                self.gdict = {
                    "images": [],
                    "annotations": [],
                    "categories": [{"id": x} for x in self.class_map],
                }
                self.eval_ids = list(self.dataloader.sampler)

        def coco_evaluate(
            self, stats: dict[str, Any], pred_json: Any, anno_json: Any, *a: Any, **k: Any
        ) -> Any:
            # Called by eval_json with the predictions re-keyed to the labels' image ids. Ultralytics'
            # own COCO pass is replaced (it would install faster-coco-eval on the fly if missing).
            if isinstance(anno_json, dict):
                self.breakdown = coco_breakdown(pred_json, anno_json, self.names)
            return stats

    with tempfile.TemporaryDirectory(prefix="edgeprune-val-") as tmp:  # predictions.json lands here
        validator = _Validator(args={**args, "save_json": True}, save_dir=Path(tmp))
        stats = validator(model=model) if model is not None else validator()
        breakdown = validator.breakdown or coco_breakdown([], validator.gdict or {}, validator.names)
    return stats, breakdown


def coco_breakdown(
    predictions: list[dict[str, Any]], labels: dict[str, Any], names: dict[int, str]
) -> dict[str, Any]:
    """AP per class and per object size of ``predictions`` against ``labels`` (both COCO dicts;
    category ids are class index + 1, as Ultralytics writes them for a custom dataset)."""
    annotations = labels.get("annotations", [])
    instances = {int(k): 0 for k in names}
    sized = dict.fromkeys(SIZES, 0)
    for a in annotations:
        instances[a["category_id"] - 1] = instances.get(a["category_id"] - 1, 0) + 1
        for s in sizes_of(a["area"]):
            sized[s] += 1
    per_class_ap: dict[int, tuple[float | None, float | None]] = {k: (None, None) for k in instances}
    size_ap: dict[str, float | None] = dict.fromkeys(SIZES)
    coco_map = None
    if annotations:
        per_class_ap, size_ap, coco_map = _evaluate(predictions, labels, instances)
        size_ap = {s: ap if sized[s] else None for s, ap in size_ap.items()}  # no instance, no score
    return {
        "per_class": [
            {"class": names.get(k, str(k)), "id": k, "instances": instances[k],
             "map50_95": per_class_ap[k][0], "map50": per_class_ap[k][1]}
            for k in sorted(instances)
        ],
        "by_size": {s: {"map50_95": size_ap[s], "instances": sized[s]} for s in SIZES},
        "coco_map50_95": coco_map,
    }  # fmt: skip


def sizes_of(area: float) -> list[str]:
    """The ranges COCO scores a box of ``area`` in: closed at both ends, as its evaluator reads
    them (a box of exactly 32² counts as small and as medium)."""
    return [name for name, (low, high) in SIZES.items() if low <= area <= high]


def _evaluate(
    predictions: list[dict[str, Any]], labels: dict[str, Any], instances: dict[int, int]
) -> tuple[dict[int, tuple[float | None, float | None]], dict[str, float | None], float]:
    from edgeprune import _optional

    fce = _optional.require("faster_coco_eval", "yolo", "AP per class and per object size")
    COCO, COCOeval_faster = fce.COCO, fce.COCOeval_faster  # noqa: N806

    quiet = lambda *_: None  # noqa: E731
    truth = COCO(labels, print_function=quiet)
    per_class: dict[int, tuple[float | None, float | None]] = {k: (0.0, 0.0) if n else (None, None)
                                                               for k, n in instances.items()}  # fmt: skip
    if not predictions:  # nothing detected: every labelled class and size scores 0
        return per_class, {s: 0.0 for s in SIZES}, 0.0
    evaluation = COCOeval_faster(truth, truth.loadRes(predictions), iouType="bbox", print_function=quiet)
    evaluation.params.imgIds = truth.getImgIds()
    evaluation.run()
    precision = evaluation.eval["precision"]  # [IoU threshold, recall, class, area range, max dets]
    iou50 = int(np.argmin(np.abs(evaluation.params.iouThrs - 0.5)))
    for k, cat in enumerate(evaluation.params.catIds):
        curve = precision[:, :, k, 0, -1]
        if (curve > -1).any():  # -1: a class with no labelled instance
            per_class[cat - 1] = (_mean(curve), _mean(curve[iou50]))
    stats = evaluation.stats_as_dict
    sizes = {s: (stats[f"AP_{s}"] if stats[f"AP_{s}"] >= 0 else None) for s in SIZES}
    return per_class, sizes, float(stats["AP_all"])


def _mean(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else 0.0
