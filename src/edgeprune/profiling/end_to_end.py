"""End-to-end latency of a detector artifact: what a device spends per frame, stage by stage.

Each timed frame is one real image, already decoded (a camera hands frames over as arrays),
taken in turn from a small set:

1. ``preprocess``: the letterbox calibration uses (Ultralytics' own, see
   ``calibration/preprocess.py``), BGR to RGB, HWC to CHW, /255;
2. ``inference``: the artifact on the target's runtime;
3. ``postprocess``: decode and NMS as Ultralytics predicts (``non_max_suppression`` at conf 0.25,
   IoU 0.7; boxes of a normalized-box artifact scaled back first; rotated NMS for OBB), or, for an
   artifact whose metadata says ``end2end`` (an NMS-free head exported with its one-to-one
   branch), only the confidence filter over its final detections. Masks and keypoints are
   carried through NMS but not drawn.

``total`` is the three together, timed as one span, under the target's profiling settings
(warm-up, iterations, minimum time); each stage's statistics come from the same frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.calibration.preprocess import letterbox, read_image, to_input
from edgeprune.errors import EdgepruneError
from edgeprune.models.detections import CONF, NMS_IOU
from edgeprune.profiling.timing import LatencyStats, profiled, sample
from edgeprune.runtimes.base import Session

STAGES = ("preprocess", "inference", "postprocess", "total")
IMAGES = 16  # real frames cycled through (their decode is not timed)


@dataclass(frozen=True)
class EndToEnd:
    """Per-stage statistics of one artifact, and what the postprocessing was."""

    stages: dict[str, LatencyStats]
    postprocess: str
    images: int

    @property
    def total(self) -> LatencyStats:
        return self.stages["total"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": {name: s.to_dict() for name, s in self.stages.items()},
            "postprocess": self.postprocess,
            "images": self.images,
        }

    def describe(self) -> str:
        return ", ".join(f"{name} p50 {s.p50:.2f} ms" for name, s in self.stages.items())


def postprocessor(metadata: dict[str, Any], imgsz: int, normalized_boxes: bool) -> tuple[Callable, str]:
    """The postprocessing of an artifact with Ultralytics' ``metadata`` (task, names, end2end),
    and a sentence saying what it is."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    names = metadata.get("names")
    if not names:
        raise EdgepruneError(
            "end-to-end timing decodes the detections: the artifact has no class names in its metadata "
            "(export it with `edgeprune export`, or Ultralytics' exporter)"
        )
    nc, task = len(names), metadata.get("task", "detect")
    if metadata.get("end2end"):

        def keep(outputs: list[np.ndarray]) -> list[np.ndarray]:
            dets = outputs[0]  # (batch, max_det, 6 + extra): x1, y1, x2, y2, score, class
            return [d[d[:, 4] > CONF] for d in dets]

        return keep, f"NMS-free (end2end head): confidence filter at {CONF}"

    def nms(outputs: list[np.ndarray]) -> list[Any]:
        pred = torch.from_numpy(outputs[0])
        if normalized_boxes:
            pred = pred.clone()
            pred[:, :4] *= imgsz
        return non_max_suppression(pred, CONF, NMS_IOU, nc=nc, rotated=task == "obb")

    return nms, f"Ultralytics non_max_suppression (conf {CONF}, IoU {NMS_IOU}, {nc} classes, task {task})"


def measure_end_to_end(
    session: Session,
    images: Sequence[str | Path],
    imgsz: int,
    post: Callable[[list[np.ndarray]], Any],
    describe_post: str,
    settings: Any,
    *,
    max_time_s: float | None = None,
) -> EndToEnd:
    """Time ``session`` end to end on ``images`` (see the module docstring) under the target's
    profiling ``settings``."""
    if not images:
        raise EdgepruneError("end-to-end timing needs real images to letterbox; none were found")
    frames = [read_image(p) for p in images[:IMAGES]]
    spans: list[tuple[float, float, float]] = []
    i = 0

    def frame() -> None:
        nonlocal i
        image = frames[i % len(frames)]
        i += 1
        t0 = time.perf_counter()
        x = to_input(letterbox(image, imgsz)[0])[None]
        t1 = time.perf_counter()
        out = session(x)
        t2 = time.perf_counter()
        post(out)
        t3 = time.perf_counter()
        spans.append((t1 - t0, t2 - t1, t3 - t2))

    totals = sample(frame, **profiled(settings), max_time_s=max_time_s)
    timed = np.asarray(spans[-len(totals) :]) * 1e3  # the timed frames are the last ones
    stages = {name: LatencyStats.from_samples(list(timed[:, k])) for k, name in enumerate(STAGES[:3])}
    stages["total"] = LatencyStats.from_samples(totals)
    return EndToEnd(stages, describe_post, len(frames))
