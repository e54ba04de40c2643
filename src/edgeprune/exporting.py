"""Export a loaded ``Detector`` for a target: the one place that joins model, runtime and calibration.

``edgeprune export``, the pipeline and the latency meters of the budget search all export
through :func:`export_detector`, so an artifact is made the same way wherever it is measured.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from edgeprune.errors import OptionError
from edgeprune.models import Detector
from edgeprune.runtimes import get_runtime
from edgeprune.runtimes.base import ExportResult, Quantization, Runtime
from edgeprune.targets import Target


def quantization_for(
    detector: Detector,
    target: Target,
    runtime: Runtime,
    *,
    calib: str | Path | None,
    calib_images: int | None = None,
    recipe: str | Path | None = None,
    float_units: Sequence[str] = (),
) -> Quantization | None:
    """What an INT8 export of ``detector`` needs (None for other precisions). ``float_units``
    (``Detector.quantization_units`` names) stay in float besides the recipe's parts."""
    from edgeprune.calibration import CalibrationData, load_recipe

    if target.precision != "int8":
        return None
    name = recipe or target.calibration
    if name is None:
        raise OptionError(f"target {target.name} is INT8 but names no calibration recipe; give `recipe`")
    if calib is None:
        raise OptionError(
            f"INT8 for {target.name} needs calibration images: `calib` (an image folder or a data.yaml)"
        )
    r = load_recipe(name)
    images = CalibrationData.from_source(
        calib, target.imgsz, calib_images or r.images, split=r.split, seed=r.seed
    )
    parts = [*r.keep_float, *float_units]
    patterns = (*detector.float_node_patterns(parts, runtime.node_naming), *r.keep_float_nodes)
    return Quantization(r, images, tuple(patterns))


def export_detector(
    detector: Detector,
    target: Target,
    out: str | Path,
    stem: str,
    *,
    calib: str | Path | None = None,
    calib_images: int | None = None,
    recipe: str | Path | None = None,
    float_units: Sequence[str] = (),
    end2end: bool = False,
) -> ExportResult:
    """Export ``detector`` to ``target``'s runtime and precision in ``out``, parity checked;
    ``float_units`` as for ``quantization_for``; ``end2end``: an NMS-free head's final
    detections (``Detector.export_module``)."""
    runtime = get_runtime(target.runtime)
    quantization = quantization_for(
        detector, target, runtime, calib=calib, calib_images=calib_images, recipe=recipe,
        float_units=float_units,
    )  # fmt: skip
    module = detector.export_module(
        target.imgsz, normalized_boxes=runtime.normalized_boxes, end2end=end2end
    ).eval()
    result = runtime.export(
        module,
        detector.example_input(target.imgsz, target.batch),
        Path(out),
        target=target,
        stem=stem,
        quantization=quantization,
        metadata=detector.export_metadata(target.imgsz, target.batch, end2end=end2end),
        compare=functools.partial(detector.output_parity, end2end=end2end),
    )
    result.details["imgsz"] = target.imgsz
    return result
