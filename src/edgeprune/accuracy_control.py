"""Accuracy-controlled INT8: keep the layers that cost the most accuracy in float until the
artifact's mAP50-95 is within ``max_drop`` points of the float model's.

One loop for every runtime whose export honours ``Quantization.float_patterns`` (ONNX Runtime's
node exclusion, NNCF's ignored scope for OpenVINO, LiteRT's per-op recipe, the TensorRT Q/DQ
ONNX):

1. The float model's mAP50-95 (PyTorch, every image letterboxed to the target's size, as the
   artifact is fed) and the INT8 artifact the recipe makes are measured on the same data.
2. While the drop is over ``max_drop``, the units the model adapter names
   (``Detector.quantization_units``: the head's decode parts, each prediction branch of the head,
   every other top-level layer) are ranked by a measured sensitivity: the export is remade with
   a unit also kept in float, and how much closer its detections come to PyTorch's on a few
   calibration images (``1 - IoU`` of paired detections, a missed one counting 1, plus ``1 -
   cosine`` of the class scores) is its gain (``rank_units``: chunks of units first, then the
   units of the best chunks). A box cosine alone misses what mAP50-95 reads: OpenVINO's INT8 box
   decode keeps it at 0.9999 while costing 1.7 points.
3. The unit that gains most is tried in float; the artifact is remade and its mAP50-95 and
   latency on the target's runtime measured. A unit that lowers the drop is kept and the rest are
   ranked again from there (a unit's effect can hide behind a worse one's); one that does not
   goes back to INT8 and the next is tried. This goes on until the drop is within
   ``max_drop``, no unit left gains, or ``max_units`` trials are done (then the result says it
   could not, and the step that lost least is the one exported).

Each step's artifact is made in a scratch folder; only the one chosen is exported to ``out``.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.errors import EdgepruneError, OptionError
from edgeprune.exporting import export_detector
from edgeprune.models import Detector
from edgeprune.runtimes import get_runtime
from edgeprune.runtimes.base import ExportResult, compare_outputs, torch_outputs
from edgeprune.targets import Target

RANK_IMAGES = 16  # calibration images the per-unit sensitivity is measured on
MAX_UNITS = 8  # units tried in float at most, beyond the recipe's own
REFINE = 2  # chunks of units whose units are ranked one by one


@dataclass(frozen=True)
class ControlStep:
    """One artifact the loop measured: which units were float and what that gave."""

    float_units: list[str]
    map50_95: float
    drop_points: float
    latency_ms: float
    size_mb: float


@dataclass
class ControlledExport:
    """What accuracy control made: the exported artifact and how it got there."""

    export: ExportResult
    max_drop: float
    fp32_metrics: dict[str, float]
    steps: list[ControlStep]
    rankings: list[list[tuple[str, float]]] = field(
        default_factory=list
    )  # per step: (unit, gain), best first

    @property
    def fp32_map50_95(self) -> float:
        return self.fp32_metrics["map50_95"]

    @property
    def final(self) -> ControlStep:
        return exported_step(self.steps, self.max_drop)

    @property
    def within(self) -> bool:
        return self.final.drop_points <= self.max_drop

    @property
    def float_units(self) -> list[str]:
        return self.final.float_units

    @property
    def float_cost_ms(self) -> float:
        """Latency the float units add over the recipe's INT8 artifact (each step timed alone)."""
        return self.final.latency_ms - self.steps[0].latency_ms

    def describe(self) -> str:
        return describe_control(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {
            "max_drop_points": self.max_drop,
            "within": self.within,
            "fp32_map50_95": self.fp32_map50_95,
            "float_units": self.float_units,
            "float_cost_ms": self.float_cost_ms,
            "chosen_step": self.steps.index(self.final),
            "steps": [asdict(s) for s in self.steps],
            "rankings": [[{"unit": u, "gain": g} for u, g in r] for r in self.rankings],
        }


def describe_control(control: dict[str, Any]) -> str:
    """One line from ``ControlledExport.to_json()`` (``export.json``'s ``accuracy_control``)."""
    units = ", ".join(control["float_units"]) or "none"
    verdict = "within" if control["within"] else "NOT within"
    drop = control["steps"][control["chosen_step"]]["drop_points"]
    return (
        f"accuracy control: {verdict} {control['max_drop_points']:g} points (drop {drop:.2f}); "
        f"float units beyond the recipe: {units}; {control['float_cost_ms']:+.2f} ms over plain INT8"
    )


def export_within_drop(
    detector: Detector,
    target: Target,
    out: str | Path,
    stem: str,
    *,
    data: str | Path,
    max_drop: float,
    calib: str | Path | None,
    calib_images: int | None = None,
    recipe: str | Path | None = None,
    end2end: bool = False,
    max_units: int = MAX_UNITS,
    say: Callable[[str], None] = lambda line: None,
) -> ControlledExport:
    """Export ``detector`` to an INT8 ``target`` with at most ``max_drop`` points of mAP50-95 lost
    against the float model on ``data`` (see the module docstring)."""
    if target.precision != "int8":
        raise OptionError(f"`max_drop` controls INT8 accuracy; target {target.name} is {target.precision}")
    if not max_drop >= 0:
        raise OptionError(f"`max_drop` is in mAP50-95 points and must be >= 0, got {max_drop}")
    if target.batch != 1:
        raise OptionError(
            f"`max_drop` measures batch-1 artifacts; target {target.name} has batch {target.batch}"
        )
    runtime = get_runtime(target.runtime)
    fp32_metrics = detector.evaluate(data, imgsz=target.imgsz, square=True, breakdown=True)
    fp32 = fp32_metrics["map50_95"]
    say(f"float mAP50-95 {fp32:.4f}; INT8 may lose at most {max_drop:g} points")
    kwargs = {"calib": calib, "calib_images": calib_images, "recipe": recipe, "end2end": end2end}

    with tempfile.TemporaryDirectory(prefix="edgeprune-accuracy-") as tmp:
        scratch = Path(tmp)

        def measure(units: Sequence[str], tag: str) -> ControlStep:
            made = export_detector(detector, target, scratch / tag, stem, float_units=units, **kwargs)
            got = detector.evaluate_artifact(made.artifact, data, imgsz=target.imgsz)["map50_95"]
            latency = _latency(runtime, made.artifact, target)
            step = ControlStep(list(units), got, (fp32 - got) * 100, latency, round(made.size_mb, 3))
            say(
                f"  {len(units)} float units: mAP50-95 {got:.4f} (drop {step.drop_points:.2f} points), "
                f"{latency:.2f} ms p50"
            )
            return step

        steps = [measure([], "plain")]
        rankings: list[list[tuple[str, float]]] = []
        chosen: list[str] = []
        tried: set[str] = set()
        ranking: list[tuple[str, float]] | None = None
        while min(s.drop_points for s in steps) > max_drop and len(steps) <= max_units:
            if ranking is None:  # ranked from the float set so far: an effect can hide behind a worse one
                ranking = rank_units(
                    detector, target, scratch / f"rank{len(steps)}", stem, base_units=chosen, **kwargs
                )
                rankings.append(ranking)
                say(
                    "  most sensitive: "
                    + (", ".join(f"{u} ({g:+.3f})" for u, g in ranking[:5]) or "no unit left")
                    + (f" of {len(ranking)} units" if ranking else "")
                )
            unit = next((u for u, g in ranking if g > 0 and u not in tried), None)
            if unit is None:
                break  # keeping any other unit float brings the outputs no closer
            tried.add(unit)
            step = measure([*chosen, unit], f"step{len(steps)}")
            steps.append(step)
            if step.drop_points < min(s.drop_points for s in steps[:-1]):
                chosen, ranking = step.float_units, None  # it helped: kept, and the rest ranked again
                tried.clear()  # what did not help before may now (an effect can hide behind another's)
            else:
                say(f"  {unit} did not help the mAP50-95: back in INT8")
    chosen = exported_step(steps, max_drop)
    result = export_detector(detector, target, Path(out), stem, float_units=chosen.float_units, **kwargs)
    controlled = ControlledExport(result, max_drop, fp32_metrics, steps, rankings)
    result.details["accuracy_control"] = controlled.to_json()
    return controlled


def exported_step(steps: Sequence[ControlStep], max_drop: float) -> ControlStep:
    """The step exported: the first within ``max_drop``, else the one that lost least (the fewest
    float units among equals)."""
    within = [s for s in steps if s.drop_points <= max_drop]
    return within[0] if within else min(steps, key=lambda s: (s.drop_points, len(s.float_units)))


def rank_units(
    detector: Detector,
    target: Target,
    scratch: Path,
    stem: str,
    *,
    calib: str | Path | None,
    calib_images: int | None = None,
    recipe: str | Path | None = None,
    end2end: bool = False,
    base_units: Sequence[str] = (),
) -> list[tuple[str, float]]:
    """``(unit, gain)``, largest gain first: how much the artifact's outputs come closer to
    PyTorch's on ``RANK_IMAGES`` calibration images when that unit also stays in float, besides
    ``base_units``.

    Coarse to fine, to spend fewer exports: the adapter's units (in its order: decode parts, head
    branches, layers) are measured in about sqrt(n) consecutive chunks, and the units of the
    ``REFINE`` chunks that gain most are then measured one by one; only those are ranked. A chunk
    the exported graph has no node of is left out."""
    from edgeprune.exporting import quantization_for

    runtime = get_runtime(target.runtime)
    kw: dict[str, Any] = {"calib": calib, "calib_images": calib_images, "recipe": recipe}
    quantization = quantization_for(detector, target, runtime, **kw)
    kw["end2end"] = end2end
    assert quantization is not None  # an INT8 target
    images = [x for _, x in zip(range(RANK_IMAGES), quantization.data.arrays(), strict=False)]
    module = detector.export_module(
        target.imgsz, normalized_boxes=runtime.normalized_boxes, end2end=end2end
    ).eval()
    import torch

    references = [torch_outputs(module, torch.from_numpy(x)) for x in images]
    exports = itertools.count()

    def error(units: Sequence[str]) -> float:
        made = export_detector(detector, target, scratch / str(next(exports)), stem, float_units=units, **kw)
        session = runtime.load(made.artifact, threads=target.threads)
        return sum(
            _output_error(detector, ref, session(x), end2end)
            for ref, x in zip(references, images, strict=True)
        )

    base = error(base_units)  # the artifact as it stands: its export's errors are the user's to see

    def gain(units: Sequence[str]) -> float | None:
        try:
            return base - error([*base_units, *units])
        except EdgepruneError:  # no node of the graph is in these units (an Identity DFL, say)
            return None

    units = [u for u in detector.quantization_units() if u not in base_units]
    size = max(1, round(len(units) ** 0.5))
    chunks = [units[i : i + size] for i in range(0, len(units), size)]
    measured = [(chunk, gain(chunk)) for chunk in chunks]
    best = sorted((m for m in measured if m[1] is not None), key=lambda m: -m[1])[:REFINE]
    ranking = []
    for chunk, chunk_gain in best:
        for unit in chunk:
            g = chunk_gain if len(chunk) == 1 else gain([unit])
            if g is not None:
                ranking.append((unit, g))
    return sorted(ranking, key=lambda r: -r[1])


def _output_error(detector: Detector, reference: list[Any], candidate: list[Any], end2end: bool) -> float:
    """How far an artifact's outputs are from PyTorch's on one image: the adapter's detection error
    (``1 - IoU`` of PyTorch's detections and the artifact's, what mAP50-95 reads; a missed one
    counts 1) plus ``1 - cosine`` of the class scores; where the adapter reads no detections,
    ``1 - cosine`` of the whole output."""
    parts = detector.output_parity(reference, candidate, end2end=end2end)
    if parts.get("detection_error") is not None:
        return parts["detection_error"] + (1.0 - parts.get("cosine_scores", 1.0))
    return 1.0 - compare_outputs(reference, candidate)["cosine"]


def _latency(runtime: Any, artifact: Path, target: Target) -> float:
    from edgeprune.profiling.timing import measure_profiled

    session = runtime.load(artifact, threads=target.threads)
    return measure_profiled(session.runner(), target.profiling).p50
