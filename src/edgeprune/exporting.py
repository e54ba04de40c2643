"""Export a loaded ``Detector`` for a target: the one place that joins model, runtime and calibration.

``edgeprune export``, the pipeline and the latency-budget search all export through
:func:`export_detector`, so an artifact is made the same way wherever it is measured.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgeprune.errors import EdgepruneError
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


class ArtifactMeter:
    """Latency of a detector as the target runs it: export, load, time.

    The first detector measured is the reference (the unpruned baseline): its artifact stays
    loaded and is timed alone at length. Every later detector is timed in interleaved rounds
    against it, and reported as ``reference latency x (candidate / reference)`` from that one run,
    so drift in the machine's load between candidates cancels out. Candidate artifacts are
    deleted once timed.
    """

    def __init__(
        self,
        target: Target,
        work: str | Path,
        *,
        percentile: str,
        calib: str | Path | None = None,
        calib_images: int | None = None,
        rounds: int = 3,
        iterations: int = 30,
        warmup: int = 5,
    ):
        self.target, self.work = target, Path(work)
        self.percentile, self.calib, self.calib_images = percentile, calib, calib_images
        self.rounds, self.iterations, self.warmup = rounds, iterations, warmup
        self.runtime = get_runtime(target.runtime)
        self.reference_ms: float | None = None
        self._reference: Callable[[], object] | None = None
        self.measured: dict[str, float] = {}

    def _load(self, detector: Detector, name: str) -> tuple[Callable[[], object], Path]:
        result = export_detector(
            detector, self.target, self.work, name, calib=self.calib, calib_images=self.calib_images
        )
        session = self.runtime.load(result.artifact, threads=self.target.threads)
        inputs = session.random_inputs()
        return (lambda: session(*inputs)), result.artifact

    def __call__(self, detector: Detector, name: str) -> float:
        from edgeprune.profiling import measure, measure_interleaved

        call, artifact = self._load(detector, name)
        if self._reference is None:
            stats = measure(call, warmup=self.warmup * 2, iterations=self.iterations * self.rounds * 2)
            self._reference, self.reference_ms = call, stats.get(self.percentile)
            ms = self.reference_ms
        else:
            both = measure_interleaved(
                {"reference": self._reference, "candidate": call},
                rounds=self.rounds, warmup=self.warmup, iterations=self.iterations,
            )  # fmt: skip
            ratio = both["candidate"].get(self.percentile) / both["reference"].get(self.percentile)
            ms = float(self.reference_ms * ratio)
            _remove_artifact(artifact)
        self.measured[name] = ms
        return ms

    def reference_now(self) -> float | None:
        """The reference artifact timed alone again with the target's profiling settings, as the
        final artifact is: next to ``reference_ms`` it measures how much the machine drifted since
        the search began (None before any measurement)."""
        from edgeprune.profiling import measure_profiled

        if self._reference is None:
            return None
        return measure_profiled(self._reference, self.target.profiling).get(self.percentile)


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
