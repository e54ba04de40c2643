"""Parity of an exported detector with PyTorch, read as detections rather than one long vector.

An INT8 artifact can keep its boxes and lose its class scores. Boxes in pixels dominate the
norm of the raw output ``(batch, 4 + nc [+ extra], anchors)``, so one cosine over all of it stays
at 0.999 while every score is zero (a YOLOv8n with its decode quantized: cosine 0.9992, mAP50-95
0.7577 -> 0.0000). This module compares the parts separately (boxes, class scores, the extra
rows of segment/pose/obb heads) and the decoded detections: both outputs through Ultralytics'
own NMS at its prediction thresholds, each PyTorch detection matched to one of the artifact's
(same class, IoU >= ``MATCH_IOU``). ``collapsed`` is set when the artifact finds fewer than
``COLLAPSE_RECALL`` of the detections PyTorch finds; with no PyTorch detection (an untrained
model, a blank image) it cannot be judged and is None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeprune.runtimes.base import cosine_similarity

CONF, NMS_IOU = 0.25, 0.7  # Ultralytics' predict defaults (cfg/default.yaml: conf None -> 0.25, iou 0.7)
MATCH_IOU = 0.5
COLLAPSE_RECALL = 0.5


def output_parts(output: np.ndarray, nc: int) -> dict[str, np.ndarray]:
    """``boxes``, ``scores`` and (segment/pose/obb heads) ``extra`` rows of a YOLO output."""
    parts = {"boxes": output[:, :4], "scores": output[:, 4 : 4 + nc]}
    if output.shape[1] > 4 + nc:
        parts["extra"] = output[:, 4 + nc :]
    return parts


def detections(output: np.ndarray, nc: int) -> list[np.ndarray]:
    """Per image, ``(n, 6)`` rows of x1, y1, x2, y2, score, class after Ultralytics' NMS."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    pred = torch.from_numpy(np.ascontiguousarray(output[:, : 4 + nc], dtype=np.float32))
    return [d.numpy() for d in non_max_suppression(pred, CONF, NMS_IOU, nc=nc)]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:4], boxes[:, 2:4])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def pairs(reference: np.ndarray, candidate: np.ndarray) -> list[tuple[int, float]]:
    """For each ``reference`` detection, highest-scoring first: the best IoU with a ``candidate``
    detection of its class still free, as ``(reference index, IoU)`` (0.0 when none). A candidate
    at IoU >= ``MATCH_IOU`` is used up by its pair; a weaker overlap is credited but leaves the
    candidate free for the detection it may really belong to."""
    free = np.ones(len(candidate), bool)
    out = []
    for i in np.argsort(-reference[:, 4]) if len(reference) else []:
        det = reference[i]
        ok = free & (candidate[:, 5] == det[5])
        iou = np.where(ok, _iou(det, candidate), -1.0) if ok.any() else np.array([-1.0])
        best = int(iou.argmax())
        if iou[best] >= MATCH_IOU:
            free[best] = False
        out.append((int(i), max(float(iou[best]), 0.0)))
    return out


def matched(reference: np.ndarray, candidate: np.ndarray) -> int:
    """How many ``reference`` detections are paired (``pairs``) at IoU >= ``MATCH_IOU``."""
    return sum(iou >= MATCH_IOU for _, iou in pairs(reference, candidate))


def detection_error(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> float | None:
    """How far the artifact's detections are from PyTorch's, per image's detections: the mean of
    ``1 - IoU`` over PyTorch's detections and their pairs (1 for a detection the artifact
    misses), what mAP50-95's ten IoU thresholds read; None with no PyTorch detection."""
    losses = [1.0 - iou for r, c in zip(reference, candidate, strict=True) for _, iou in pairs(r, c)]
    return float(np.mean(losses)) if losses else None


def detection_parity(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], nc: int
) -> dict[str, Any]:
    """Per-part cosines, detection counts and recall of the artifact against PyTorch (first
    outputs), and ``collapsed`` (see the module docstring)."""
    ref, got = np.asarray(reference[0]), np.asarray(candidate[0])
    got_parts = output_parts(got, nc)
    out: dict[str, Any] = {
        f"cosine_{name}": cosine_similarity(part, got_parts[name])
        for name, part in output_parts(ref, nc).items()
    }
    out.update(compare_detections(detections(ref, nc), detections(got, nc)))
    return out


def compare_detections(ref_dets: Sequence[np.ndarray], got_dets: Sequence[np.ndarray]) -> dict[str, Any]:
    """Counts, matches, recall, detection error and ``collapsed`` of the artifact's detections
    (per image, rows of x1, y1, x2, y2, score, class) against PyTorch's."""
    n_ref = sum(len(d) for d in ref_dets)
    hits = sum(matched(r, g) for r, g in zip(ref_dets, got_dets, strict=True))
    return {
        "detections_pytorch": n_ref,
        "detections_artifact": sum(len(d) for d in got_dets),
        "detections_matched": hits,
        "detection_recall": hits / n_ref if n_ref else None,
        "detection_error": detection_error(ref_dets, got_dets),
        "collapsed": bool(hits / n_ref < COLLAPSE_RECALL) if n_ref else None,
    }


def final_detection_parity(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]
) -> dict[str, Any]:
    """Parity of an NMS-free artifact, whose output is already ``(batch, max_det, 6 [+ extra])``
    final detections (x1, y1, x2, y2, score, class): those above ``CONF`` compared as
    ``detection_parity`` compares decoded ones. The rows are a top-k, whose order among equal
    scores is the runtime's own, so the whole-output cosine and error are replaced by those of
    the scores sorted (``cosine_scores``, order-free)."""
    ref, got = np.asarray(reference[0]), np.asarray(candidate[0])
    ref_scores, got_scores = (np.sort(o[..., 4], axis=-1) for o in (ref, got))
    ref_dets, got_dets = ([d[d[:, 4] > CONF, :6] for d in out] for out in (ref, got))
    return {
        **compare_detections(ref_dets, got_dets),
        "cosine": cosine_similarity(ref_scores, got_scores),
        "cosine_scores": cosine_similarity(ref_scores, got_scores),
        "max_abs_err": float(np.abs(ref_scores - got_scores).max()) if ref_scores.size else 0.0,
    }


def describe_parity(parity: dict[str, Any]) -> str:
    """One line: the whole output's error and cosine, and the parts and detections where known."""
    line = f"max abs error {parity['max_abs_err']:.3g}, cosine {parity['cosine']:.6f}"
    parts = [f"{k.removeprefix('cosine_')} {v:.4f}" for k, v in parity.items() if k.startswith("cosine_")]
    if parts:
        line += f" ({', '.join(parts)})"
    if parity.get("detection_recall") is not None:
        line += (
            f"; detections: {parity['detections_artifact']} found, "
            f"{parity['detection_recall']:.0%} of PyTorch's {parity['detections_pytorch']}"
        )
    return line


def describe_collapse(parity: dict[str, Any]) -> str | None:
    """The warning a user reads when ``parity`` says the artifact collapsed, else None."""
    if not parity.get("collapsed"):
        return None
    return (
        f"the artifact finds {parity['detections_matched']} of the "
        f"{parity['detections_pytorch']} detections PyTorch finds on the parity image (class scores cosine "
        f"{parity.get('cosine_scores', float('nan')):.3f}): its accuracy has collapsed. Keep more of the model in "
        "float (the recipe's keep_float / keep_float_nodes) and measure it with --data"
    )
