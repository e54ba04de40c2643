"""Latency meters: how the budget search times a candidate on the target's runtime and precision.

One protocol, :class:`LatencyMeter`, and three meters behind it:

* :class:`ArtifactMeter`: export here, time here, each candidate in alternating rounds against
  the baseline (the default);
* :class:`RemoteMeter`: export here, profile on an SSH host (the device itself) exactly as
  ``edgeprune profile --host`` does;
* :class:`CallableMeter`: a function ``fn(detector, name) -> ms`` of your own; the final artifact
  is profiled here as ``edgeprune profile`` would.

The searcher only speaks the protocol: it never asks which meter it holds.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.exporting import export_detector
from edgeprune.models import Detector
from edgeprune.profiling import timing
from edgeprune.profiling.timing import LatencyStats
from edgeprune.runtimes import get_runtime
from edgeprune.runtimes.base import ExportResult
from edgeprune.targets import Target

__all__ = ["ArtifactMeter", "CallableMeter", "Check", "LatencyMeter", "RemoteMeter", "make_meter"]


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


@runtime_checkable
class LatencyMeter(Protocol):
    """What the budget search needs from a way of timing candidates.

    The first detector measured is the reference (the unpruned baseline); the meter reports every
    later one in the reference's frame. Attributes:

    * ``percentile``: the statistic reported (the budget's);
    * ``reference_timings``: every timing of the reference so far, in ms (one, for a meter that
      times it once); their median is the reference latency in the meter's frame;
    * ``retimes_reference``: whether the reference is timed again alongside every candidate (its
      spread then says how noisy the machine is: ``margin="auto"`` needs it).
    """

    percentile: str
    reference_timings: list[float]
    retimes_reference: bool

    def measure(self, detector: Detector, name: str) -> float:
        """Latency of ``detector`` in ms at ``percentile``; the first call times the reference."""
        ...

    def alone(self, detector: Detector, name: str) -> float | None:
        """``detector`` timed as the final check times it, in the search's frame; None when this
        meter times candidates that way already (nothing to compare)."""
        ...

    def check(self, artifact: Path) -> Check:
        """The final artifact profiled as ``edgeprune profile`` profiles it."""
        ...


def reference_ms(meter: LatencyMeter) -> float | None:
    """The reference's latency in the meter's frame: the median of its timings so far."""
    timings = meter.reference_timings
    return float(np.median(timings)) if timings else None


class _ExportingMeter:
    """What every meter shares: exporting for the target, with the calibration INT8 needs."""

    retimes_reference = False

    def __init__(
        self, target: Target, *, calib: str | Path | None = None, calib_images: int | None = None
    ) -> None:
        self.target = target
        self.percentile = target.budget.percentile
        self.calib, self.calib_images = calib, calib_images
        self.reference_timings: list[float] = []
        self.measured: dict[str, float] = {}

    def export(self, detector: Detector, out: Path, stem: str) -> ExportResult:
        return export_detector(
            detector, self.target, out, stem, calib=self.calib, calib_images=self.calib_images
        )

    def alone(self, detector: Detector, name: str) -> float | None:
        return None

    def _record(self, name: str, ms: float, *, reference: bool) -> float:
        if reference:
            self.reference_timings.append(ms)
        self.measured[name] = ms
        return ms

    def _profile_here(self, artifact: Path) -> Check:
        run = get_runtime(self.target.runtime).load(artifact, threads=self.target.threads).runner()
        return Check(timing.measure_profiled(run, self.target.profiling))


class ArtifactMeter(_ExportingMeter):
    """Latency of a detector as the target runs it: export, load, time, here.

    The first detector measured is the reference (the unpruned baseline): its artifact stays
    loaded and is timed alone, as ``edgeprune profile`` times. Every later detector is timed in
    ``rounds`` alternating rounds against it (each round, per model: the target's warm-up, then at
    least ``iterations`` runs and ``round_s`` seconds) and reported as ``reference latency x the
    median over rounds of candidate / reference``. A round's two timings are neighbours in time,
    so drift in load cancels out, and the median ignores a round that a burst of load hit on one
    side only. The reference latency is the median of every timing of the reference so far (alone
    at the start, then once per round), so one burst at the start does not scale every later
    result. Candidate artifacts are deleted once timed.

    Every round warms each model up for the target's ``warmup_s``: a small model timed right after
    a large one runs slower for its first calls (see docs/latency.md).
    """

    retimes_reference = True

    def __init__(
        self,
        target: Target,
        work: str | Path,
        *,
        calib: str | Path | None = None,
        calib_images: int | None = None,
        rounds: int = 6,
        iterations: int = 10,
        warmup: int = 5,
        round_s: float | None = None,
    ):
        super().__init__(target, calib=calib, calib_images=calib_images)
        self.work = Path(work)
        self.rounds, self.iterations, self.warmup = rounds, iterations, warmup
        self.round_s = target.profiling.min_time_s / 4 if round_s is None else round_s
        self.runtime = get_runtime(target.runtime)
        self._reference: Callable[[], object] | None = None
        self.ratios: dict[str, float] = {}

    def _load(self, artifact: Path) -> Callable[[], object]:
        return self.runtime.load(artifact, threads=self.target.threads).runner()

    def _per_round(self, rounds: dict[str, list[list[float]]], name: str) -> tuple[float, list[float]]:
        """Of rounds timed against the reference: the median over rounds of ``name`` / reference at
        the budget's percentile, and the reference's latency in each round."""
        ref = [LatencyStats.from_samples(r).get(self.percentile) for r in rounds["reference"]]
        own = [LatencyStats.from_samples(r).get(self.percentile) for r in rounds[name]]
        return float(np.median([o / r for o, r in zip(own, ref, strict=True)])), ref

    def measure(self, detector: Detector, name: str) -> float:
        artifact = self.export(detector, self.work, name).artifact
        call = self._load(artifact)
        if self._reference is None:
            self._reference = call
            first = timing.measure_profiled(call, self.target.profiling).get(self.percentile)
            self._record(name, first, reference=True)
            self.ratios[name] = 1.0
            return first
        rounds = timing.sample_interleaved(
            {"reference": self._reference, "candidate": call}, rounds=self.rounds, warmup=self.warmup,
            warmup_s=self.target.profiling.warmup_s, iterations=self.iterations, min_time_s=self.round_s,
        )  # fmt: skip
        ratio, ref = self._per_round(rounds, "candidate")
        self.reference_timings += ref
        _remove_artifact(artifact)
        self.ratios[name] = ratio
        return self._record(name, reference_ms(self) * ratio, reference=False)

    def alone(self, detector: Detector, name: str) -> float:
        """``detector`` exported and timed as the final verdict times it (``check``: on its own,
        alternating with the baseline timed the same way), in the search's frame (``Check.ratio x
        the reference latency``), so that the machine running slower or faster by now is not taken
        for a property of the model. The artifact is deleted afterwards."""
        artifact = self.export(detector, self.work, name).artifact
        check = self.check(artifact)
        _remove_artifact(artifact)
        ms = check.in_frame(reference_ms(self)) or check.stats.get(self.percentile)
        return self._record(name, ms, reference=False)

    def check(self, artifact: Path, rounds: int = 3) -> Check:
        """The final artifact timed ``rounds`` times as ``edgeprune profile`` times it, alternating
        with the reference timed the same way (see ``Check``)."""
        calls = {"final": self._load(Path(artifact))}
        if self._reference is not None:
            calls["reference"] = self._reference
        timed = timing.sample_interleaved(calls, rounds=rounds, **timing.profiled(self.target.profiling))
        stats = LatencyStats.from_samples([x for r in timed["final"] for x in r])
        if "reference" not in timed:
            return Check(stats)
        ratio, ref = self._per_round(timed, "final")
        return Check(stats, float(np.median(ref)), ratio)


class RemoteMeter(_ExportingMeter):
    """Latency measured on another machine: export here, profile there over SSH.

    Every candidate goes through the same remote profiler as ``edgeprune profile --host``; a
    dedicated device needs no interleaving against a reference.
    """

    def __init__(
        self,
        target: Target,
        work: str | Path,
        host: str,
        *,
        ssh_config: str | Path | None = None,
        python: str = "python3",
        calib: str | Path | None = None,
        calib_images: int | None = None,
    ):
        from edgeprune.profiling.remote import HostSpec

        super().__init__(target, calib=calib, calib_images=calib_images)
        self.work = Path(work)
        self.spec = HostSpec.parse(host, python)
        self.ssh_config = ssh_config

    def _profile(self, artifact: Path, what: str) -> dict[str, Any]:
        from edgeprune.profiling.remote import profile_hosts

        (result,) = profile_hosts([self.spec], artifact, self.target, ssh_config=self.ssh_config)
        if not result.ok:
            raise EdgepruneError(f"{what} on {self.spec.label} failed: {result.error}")
        return result.report["result"]["latency_ms"]

    def measure(self, detector: Detector, name: str) -> float:
        artifact = self.export(detector, self.work, name).artifact
        try:
            latency = self._profile(artifact, f"measuring {name}")
        finally:
            _remove_artifact(artifact)
        return self._record(name, float(latency[self.percentile]), reference=not self.reference_timings)

    def check(self, artifact: Path) -> Check:
        got = self._profile(artifact, "profiling the final artifact")
        fields = [k for k in LatencyStats.__dataclass_fields__ if k not in ("outliers", "histogram")]
        return Check(LatencyStats(**{k: got.get(k, float("nan")) for k in fields}))


class CallableMeter(_ExportingMeter):
    """Your own timing: ``fn(detector, name) -> ms`` at the budget's percentile (a simulator, a
    lookup table, a device farm's API). The final artifact is exported for ``target`` and profiled
    here, as ``edgeprune profile`` does. ``alone``, when given, times a model as that final check
    will, for the search's pre-fine-tuning check."""

    def __init__(
        self,
        fn: Callable[[Detector, str], float],
        target: Target,
        *,
        alone: Callable[[Detector, str], float] | None = None,
        calib: str | Path | None = None,
        calib_images: int | None = None,
    ):
        super().__init__(target, calib=calib, calib_images=calib_images)
        self.fn, self._alone = fn, alone

    def measure(self, detector: Detector, name: str) -> float:
        return self._record(name, float(self.fn(detector, name)), reference=not self.reference_timings)

    def alone(self, detector: Detector, name: str) -> float | None:
        return (
            None if self._alone is None else self._record(name, self._alone(detector, name), reference=False)
        )

    def check(self, artifact: Path) -> Check:
        return self._profile_here(artifact)


def make_meter(
    target: Target,
    work: Path,
    *,
    meter: LatencyMeter | Callable[[Detector, str], float] | None = None,
    host: str | None = None,
    host_python: str = "python3",
    ssh_config: str | Path | None = None,
    calib: str | Path | None = None,
    calib_images: int | None = None,
    rounds: int = 6,
    iterations: int = 10,
    warmup: int = 5,
) -> LatencyMeter:
    """The meter a search uses: ``meter`` as given (a plain function is wrapped in a
    ``CallableMeter``), else a ``RemoteMeter`` on ``host``, else an ``ArtifactMeter`` here."""
    if meter is not None and host is not None:
        raise EdgepruneError("host and meter exclude each other: the meter measures on its own terms")
    if isinstance(meter, LatencyMeter):
        return meter
    if meter is not None:
        return CallableMeter(meter, target, calib=calib, calib_images=calib_images)
    if host is not None:
        return RemoteMeter(
            target,
            work,
            host,
            ssh_config=ssh_config,
            python=host_python,
            calib=calib,
            calib_images=calib_images,
        )
    return ArtifactMeter(
        target,
        work,
        calib=calib,
        calib_images=calib_images,
        rounds=rounds,
        iterations=iterations,
        warmup=warmup,
    )


def _remove_artifact(artifact: Path) -> None:
    if artifact.parent.name.endswith("_openvino_model"):
        shutil.rmtree(artifact.parent, ignore_errors=True)
        return
    for path in artifact.parent.glob(f"{artifact.stem}.*"):
        path.unlink(missing_ok=True)
