"""What a budget search records: every probe, every step, and the typed result it returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.models.base import Detector
from edgeprune.profiling.budget import Verdict
from edgeprune.profiling.meters import Check
from edgeprune.profiling.timing import LatencyStats
from edgeprune.pruning.options import SearchConfig
from edgeprune.runtimes.base import ExportResult


@dataclass
class Probe:
    """One measured candidate."""

    step: int
    ratio: float  # the action's amount (the fraction of channels, for width)
    params: int
    macs: int
    predicted_ms: float
    measured_ms: float
    action: str = "width"
    proxy_loss: float | None = None  # the accuracy proxy, when a step compares several actions
    # timed twice because its first timing ran slower than a larger model measured before it:
    first_ms: float | None = None  # that first timing (``measured_ms`` is the lower of the two)
    reversed: bool = False  # still slower than the larger model after the second timing


def reversed_probes_warning(probes: list[Probe]) -> str | None:
    """The report's warning when probes ran slower than larger models even when timed twice."""
    bad = [p for p in probes if p.reversed]
    if not bad:
        return None
    where = ", ".join(f"step {p.step} {p.action} {p.ratio:.3f} ({p.measured_ms:.2f} ms)" for p in bad[:3])
    return (
        f"{len(bad)} probe(s) ran slower than a larger model even when timed twice ({where}): the runtime's "
        "latency is not monotone in MACs there, or the machine was loaded throughout; the search pooled "
        "them as one latency. Check the kept model's measured speed-up, or time on a quiet machine."
    )


@dataclass
class StepRecord:
    """One step taken: the candidate kept, its timings and its accuracy after fine-tuning."""

    step: int
    goal_ms: float
    ratio: float
    params: int
    macs: int
    predicted_ms: float
    measured_ms: float
    checkpoint: str
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    checked_ms: float | None = None  # timed on its own before fine-tuning (the last step's check)
    action: str = "width"
    removed: list[str] = field(default_factory=list)  # depth: the repeats removed (module paths)


@dataclass
class SearchResult:
    """What a search produced: the model kept, its artifact, the verdict and how it got there.

    Latencies are in ms at the budget's percentile. ``*_in_search`` and ``predicted_ms`` are in
    the frame of the baseline's timings during the search; ``final_check`` is the artifact
    profiled on its own at the end (``Check``), with the baseline alongside where the meter can.
    """

    detector: Detector
    config: SearchConfig
    round_to: int
    verdict: Verdict
    final_check: Check
    export: ExportResult
    checkpoint: Path
    counts: dict[str, int]
    metrics: dict[str, float]
    baseline: dict[str, Any]
    steps: list[StepRecord]
    probes: list[Probe]
    latency_points: list[tuple[float, float]]
    budget_ms_in_search: float
    predicted_ms: float
    measured_ms_in_search: float
    reference_ms: float
    margin: dict[str, Any]
    message: str
    layers: list[dict[str, Any]] = field(default_factory=list)  # channels and MACs per layer, before -> after

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    @property
    def artifact(self) -> Path:
        return self.export.artifact

    @property
    def stats(self) -> LatencyStats:
        return self.final_check.stats

    @property
    def final_in_frame(self) -> float | None:
        """The final artifact's latency had the baseline run as during the search."""
        return self.final_check.in_frame(self.reference_ms)

    @property
    def drift(self) -> float | None:
        """How much faster (< 1) or slower the baseline ran at the final check than in the search."""
        now = self.final_check.reference_ms
        return now / self.reference_ms if now and self.reference_ms else None

    @property
    def prediction_error(self) -> float:
        """The latency model's last prediction against the final artifact, in the search's frame."""
        actual = self.final_in_frame or self.verdict.latency_ms
        return abs(self.predicted_ms - actual) / actual

    def search_block(self) -> dict[str, Any]:
        """The ``search`` entry of ``prune.json``."""
        final_ms = self.verdict.latency_ms
        return {
            "config": self.config.to_dict(),
            "speedup": self.config.speedup,
            "round_to": self.round_to,  # every pruned width is a multiple of this
            "budget_ms_in_search": self.budget_ms_in_search,  # with a speed-up: the baseline's median / speedup
            "steps": [asdict(s) for s in self.steps],
            "probes": [asdict(p) for p in self.probes],
            "latency_points": self.latency_points,
            "predicted_ms": self.predicted_ms,
            "measured_ms_in_search": self.measured_ms_in_search,
            "measured_ms_checked": self.steps[-1].checked_ms if self.steps else None,
            "measured_ms_final": final_ms,
            "measured_ms_final_in_search_frame": self.final_in_frame,
            "reference_ms": self.reference_ms,
            "reference_ms_final": self.final_check.reference_ms,
            "drift": self.drift,
            "prediction_error": self.prediction_error,
            "prediction_error_uncorrected": abs(self.predicted_ms - final_ms) / final_ms,
            "margin": self.margin,
            "layers": self.layers,
        }


def closing_message(r: SearchResult, imgsz: int) -> str:
    """The sentence that closes a search: the verdict, or why the budget was not met."""
    v, pct = r.verdict, r.config.percentile
    kept = f"kept: {r.checkpoint}, {r.artifact}"
    if v.passed:
        message = v.sentence()
    elif r.measured_ms_in_search <= r.budget_ms_in_search:  # not a limit of pruning: two timings disagree
        message = (
            f"budget not met on the final check: {v.latency_ms:.2f} ms {pct} on its own (budget "
            f"{v.budget_ms:.2f} ms), while the search timed this model at {r.measured_ms_in_search:.2f} ms against "
            f"the baseline; the machine's timing varies (cv {r.stats.cv:.0%} in the final check), so re-measure "
            f"it with `edgeprune profile` or on a dedicated device; {kept}"
        )
    else:
        message = (
            f"budget not met: the smallest model reached runs in {v.latency_ms:.2f} ms {pct} (budget "
            f"{v.budget_ms:.2f} ms) with {r.counts['params'] / 1e6:.2f}M params and "
            f"{r.counts['macs'] / 1e9:.2f} GMACs at {imgsz} px; {kept}"
        )
    s = r.config.speedup
    if s is not None:
        message += (
            f" (speed-up {s:g}x: the budget is the baseline's {v.budget_ms * s:.2f} ms, timed alongside "
            f"the final check, / {s:g}; the verdict of `edgeprune profile` uses the target's budget instead)"
        )
    return message
