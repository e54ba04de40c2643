"""Export a loaded ``Detector`` for a target: the one place that joins model, runtime and calibration.

``edgeprune export``, the pipeline and the latency-budget search all export through
:func:`export_detector`, so an artifact is made the same way wherever it is measured.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.models import Detector
from edgeprune.runtimes import get_runtime
from edgeprune.runtimes.base import ExportResult, Quantization, Runtime
from edgeprune.targets import Target

if TYPE_CHECKING:
    from edgeprune.profiling import LatencyStats


def quantization_for(
    detector: Detector,
    target: Target,
    runtime: Runtime,
    *,
    calib: str | Path | None,
    calib_images: int | None = None,
    recipe: str | Path | None = None,
) -> Quantization | None:
    """What an INT8 export of ``detector`` needs (None for other precisions)."""
    from edgeprune.calibration import CalibrationData, load_recipe

    if target.precision != "int8":
        return None
    name = recipe or target.calibration
    if name is None:
        raise EdgepruneError(f"target {target.name} is INT8 but names no calibration recipe; pass --recipe")
    if calib is None:
        raise EdgepruneError(
            f"INT8 for {target.name} needs calibration images: --calib IMAGE_DIR or --calib DATA.yaml"
        )
    r = load_recipe(name)
    images = CalibrationData.from_source(
        calib, target.imgsz, calib_images or r.images, split=r.split, seed=r.seed
    )
    patterns = (*detector.float_node_patterns(r.keep_float, runtime.node_naming), *r.keep_float_nodes)
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
) -> ExportResult:
    """Export ``detector`` to ``target``'s runtime and precision in ``out``, parity checked."""
    runtime = get_runtime(target.runtime)
    quantization = quantization_for(
        detector, target, runtime, calib=calib, calib_images=calib_images, recipe=recipe
    )
    module = detector.export_module(target.imgsz, normalized_boxes=runtime.normalized_boxes).eval()
    result = runtime.export(
        module,
        detector.example_input(target.imgsz, target.batch),
        Path(out),
        target=target,
        stem=stem,
        quantization=quantization,
        metadata=detector.export_metadata(target.imgsz, target.batch),
    )
    result.details["imgsz"] = target.imgsz
    return result


class Check(NamedTuple):
    """An artifact profiled on its own, like ``edgeprune profile``, in rounds alternating with the
    reference (the baseline) profiled the same way.

    ``stats``: the artifact's runs pooled (what the verdict judges); ``reference_ms``: the
    reference's median latency in these rounds (next to the search's, how much the machine drifted),
    ``ratio``: the median over rounds of artifact / reference, a round's two timings being
    neighbours in time. Both None when there was no reference to time.
    """

    stats: LatencyStats
    reference_ms: float | None = None
    ratio: float | None = None

    def in_frame(self, reference_ms: float | None) -> float | None:
        """The artifact's latency had the reference run ``reference_ms`` (the search's frame)."""
        return self.ratio * reference_ms if self.ratio is not None and reference_ms else None


class ArtifactMeter:
    """Latency of a detector as the target runs it: export, load, time.

    The first detector measured is the reference (the unpruned baseline): its artifact stays
    loaded and is timed alone, as ``edgeprune profile`` times. Every later detector is timed in
    ``rounds`` alternating rounds against it (each round, per model: the target's warm-up, then at
    least ``iterations`` runs and ``round_s`` seconds) and reported as ``reference latency x the
    median over rounds of candidate / reference``. A round's two timings are neighbours in time,
    so drift in load cancels out, and the median ignores a round that a burst of load hit on one
    side only. The reference latency is the median of every timing of the reference so far (alone
    at the start, then once per round), so one burst at the start does not scale every later
    result. Candidate artifacts are deleted once timed.

    Every round warms each model up for the target's ``warmup_s``: on this project's x86 VM a
    small model timed right after a large one ran 2-9% slower for its first calls, and short
    rounds without a warm-up gave ratios 1-7% above the same models timed on their own
    (``benchmarks/interleaving.py``). Over repeats, the median of per-round ratios varied least of
    the protocols measured there (cv 0.8-2.1%, against 1.5-7.8% for 3 pooled rounds).
    """

    def __init__(
        self,
        target: Target,
        work: str | Path,
        *,
        percentile: str,
        calib: str | Path | None = None,
        calib_images: int | None = None,
        rounds: int = 6,
        iterations: int = 10,
        warmup: int = 5,
        round_s: float | None = None,
    ):
        self.target, self.work = target, Path(work)
        self.percentile, self.calib, self.calib_images = percentile, calib, calib_images
        self.rounds, self.iterations, self.warmup = rounds, iterations, warmup
        self.round_s = target.profiling.min_time_s / 4 if round_s is None else round_s
        self.runtime = get_runtime(target.runtime)
        self.reference_ms: float | None = None
        self.reference_timings: list[float] = []
        self._reference: Callable[[], object] | None = None
        self.measured: dict[str, float] = {}
        self.ratios: dict[str, float] = {}

    def _export(self, detector: Detector, name: str) -> Path:
        return export_detector(
            detector, self.target, self.work, name, calib=self.calib, calib_images=self.calib_images
        ).artifact

    def _load(self, artifact: Path) -> Callable[[], object]:
        session = self.runtime.load(artifact, threads=self.target.threads)
        inputs = session.random_inputs()
        return lambda: session(*inputs)

    def _per_round(self, rounds: dict[str, list[list[float]]], name: str) -> tuple[float, list[float]]:
        """Of rounds timed against the reference: the median over rounds of ``name`` / reference at
        the budget's percentile, and the reference's latency in each round."""
        from edgeprune.profiling import LatencyStats

        ref = [LatencyStats.from_samples(r).get(self.percentile) for r in rounds["reference"]]
        own = [LatencyStats.from_samples(r).get(self.percentile) for r in rounds[name]]
        return float(np.median([o / r for o, r in zip(own, ref, strict=True)])), ref

    def __call__(self, detector: Detector, name: str) -> float:
        from edgeprune.profiling import measure_profiled, sample_interleaved

        artifact = self._export(detector, name)
        call = self._load(artifact)
        if self._reference is None:
            self._reference = call
            self.reference_timings.append(measure_profiled(call, self.target.profiling).get(self.percentile))
            ratio = 1.0
        else:
            rounds = sample_interleaved(
                {"reference": self._reference, "candidate": call}, rounds=self.rounds, warmup=self.warmup,
                warmup_s=self.target.profiling.warmup_s, iterations=self.iterations, min_time_s=self.round_s,
            )  # fmt: skip
            ratio, ref = self._per_round(rounds, "candidate")
            self.reference_timings += ref
            _remove_artifact(artifact)
        self.reference_ms = float(np.median(self.reference_timings))
        ms = self.reference_ms * ratio
        self.measured[name], self.ratios[name] = ms, ratio
        return ms

    def alone(self, detector: Detector, name: str) -> float:
        """``detector`` exported and timed as the final verdict times it (``check``: on its own,
        alternating with the baseline timed the same way), at the budget's percentile, in the
        search's frame (``Check.ratio x reference_ms``), so that the machine running slower or
        faster by now is not taken for a property of the model. The artifact is deleted afterwards."""
        artifact = self._export(detector, name)
        check = self.check(artifact)
        _remove_artifact(artifact)
        ms = check.in_frame(self.reference_ms) or check.stats.get(self.percentile)
        self.measured[name] = ms
        return ms

    def check(self, artifact: Path, rounds: int = 3) -> Check:
        """The final artifact timed ``rounds`` times as ``edgeprune profile`` times it, alternating
        with the reference timed the same way (see ``Check``)."""
        from edgeprune.profiling import LatencyStats, profiled, sample_interleaved

        calls = {"final": self._load(Path(artifact))}
        if self._reference is not None:
            calls["reference"] = self._reference
        timed = sample_interleaved(calls, rounds=rounds, **profiled(self.target.profiling))
        stats = LatencyStats.from_samples([x for r in timed["final"] for x in r])
        if "reference" not in timed:
            return Check(stats)
        ratio, ref = self._per_round(timed, "final")
        return Check(stats, float(np.median(ref)), ratio)


def _remove_artifact(artifact: Path) -> None:
    import shutil

    if artifact.parent.name.endswith("_openvino_model"):
        shutil.rmtree(artifact.parent, ignore_errors=True)
        return
    for path in artifact.parent.glob(f"{artifact.stem}.*"):
        path.unlink(missing_ok=True)


class RemoteMeter:
    """Latency of a detector measured on another machine: export here, profile there over SSH.

    Every candidate goes through the same remote profiler as ``edgeprune profile --host``; a
    dedicated device needs no interleaving against a reference.
    """

    def __init__(self, target: Target, work: str | Path, host: str, *, percentile: str,
                 ssh_config: str | Path | None = None, python: str = "python3",
                 calib: str | Path | None = None, calib_images: int | None = None):  # fmt: skip
        from edgeprune.profiling.remote import HostSpec

        self.target, self.work, self.percentile = target, Path(work), percentile
        self.spec = HostSpec.parse(host, python)
        self.ssh_config, self.calib, self.calib_images = ssh_config, calib, calib_images
        self.reference_ms: float | None = None
        self.measured: dict[str, float] = {}

    def __call__(self, detector: Detector, name: str) -> float:
        from edgeprune.profiling.remote import profile_hosts

        artifact = export_detector(
            detector, self.target, self.work, name, calib=self.calib, calib_images=self.calib_images
        ).artifact
        (result,) = profile_hosts([self.spec], artifact, self.target, ssh_config=self.ssh_config)
        _remove_artifact(artifact)
        if not result.ok:
            raise EdgepruneError(f"measuring {name} on {self.spec.label} failed: {result.error}")
        ms = float(result.report["result"]["latency_ms"][self.percentile])
        self.reference_ms = self.reference_ms or ms
        self.measured[name] = ms
        return ms
