"""Prune to a latency budget, driven by latency measured on the target's runtime and precision.

The search removes channels in a few steps, each followed by optional fine-tuning:

* **which channels** go is decided by importance, ranked globally across all groups (the
  ``global`` allocation of ``prune_detector``: per-layer widths differ, no layer loses more than
  ``max_layer_ratio`` of its channels in one step, widths stay multiples of the target's
  alignment);
* **how many** go is decided by latency *measured* on exported artifacts (the target's runtime
  and precision: ONNX Runtime INT8, OpenVINO, TFLite, ...), never by a FLOPs proxy. A latency
  model (``LatencyModel``: latency against MACs, piecewise linear through every artifact
  measured so far, the baseline included) proposes the ratio that should land on the step's
  goal; the candidate is exported and measured; the model takes that point and the ratio is
  corrected, up to ``probes_per_step`` times.

Steps walk the latency down in equal parts from the baseline to the budget minus a ``margin``:
a fixed fraction (3% by default), or ``"auto"``: as far under the budget as the baseline's own
timings ran slow during the search (their 90th percentile over their median), so that the final
artifact still meets the budget when the machine runs as slow as it did one timing in ten.

Timing on a shared machine drifts, so every candidate is timed in interleaved rounds against
the baseline artifact and reported as ``ratio x the baseline's reference latency``: a ratio
measured under one load (see ``ArtifactMeter``). The final artifact is measured again on its
own, through the same profiling layer as ``edgeprune profile`` and alternating with the
baseline, and judged against the budget; predicted and measured latency are both reported,
with the baseline's drift over the run.

State is written after every step (``OUT/search/state.json`` and the step's checkpoint), so an
interrupted run continues from its last completed step with ``resume=True`` (the baseline is
timed again first: the meter's reference).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.models.base import Detector
from edgeprune.pruning.options import PruneConfig
from edgeprune.pruning.pruner import prune_detector

STATE_VERSION = 1


@dataclass(frozen=True)
class SearchConfig:
    """How the budget search runs.

    Attributes:
        budget_ms: the latency to meet, at ``percentile``.
        speedup: instead of ``budget_ms``: the budget is the baseline's latency divided by this,
            the baseline timed again with every candidate (the median of its timings so far), so
            that a machine running faster or slower as a whole does not move the goal.
        percentile: ``p50``, ``p90``, ``p99`` or ``mean``.
        steps: pruning steps from the baseline to the budget (fine-tuning after each).
        importance: channel criterion (``l1``, ``l2``, ``bn``, ``taylor``, ``lamp``, ``random``).
        max_layer_ratio: no layer loses more than this fraction of its channels in one step.
        margin: aim this fraction under the budget, so that measurement noise does not flip the
            verdict; ``"auto"``: ``1 - median / p90`` of the baseline's timings so far (between
            ``MARGIN_MIN`` and ``MARGIN_MAX``; ``MARGIN_MIN`` until there are ``AUTO_TIMINGS``).
        tolerance: a probe within this fraction above its step's goal is accepted.
        probes_per_step: candidates measured per step at most.
        step_epochs: fine-tuning epochs after each step but the last (needs data).
        final_epochs: fine-tuning epochs after the last step (needs data).
        distill: fine-tune with knowledge distillation from the unpruned model.
        calib_images: calibration images of INT8 candidates (latency does not depend on them).
        rounds, iterations, warmup: interleaved timing of each candidate against the baseline
            (``ArtifactMeter``: per model and round, the target's warm-up, then ``iterations``
            runs and a quarter of the target's ``min_time_s``).
        extra_steps: steps allowed after the planned ones while the budget is still missed.
        bn_images: train images that re-estimate BatchNorm statistics after each step (with data;
            0: never), before that step's fine-tuning, evaluation and the next step's ranking.
    """

    budget_ms: float | None = None
    percentile: str = "p50"
    speedup: float | None = None
    steps: int = 3
    importance: str = "l2"
    max_layer_ratio: float = 0.6
    margin: float | str = 0.03
    tolerance: float = 0.02
    probes_per_step: int = 3
    step_epochs: int = 0
    final_epochs: int = 0
    distill: bool = False
    calib_images: int = 16
    rounds: int = 6
    iterations: int = 10
    warmup: int = 5
    extra_steps: int = 3
    bn_images: int = 256

    def check(self) -> None:
        if (self.budget_ms is None) == (self.speedup is None):
            raise EdgepruneError(
                "give a latency budget or a speed-up, one of the two (--budget-ms, --speedup)"
            )
        if self.budget_ms is not None and not self.budget_ms > 0:
            raise EdgepruneError(f"--budget-ms must be > 0, got {self.budget_ms}")
        if self.speedup is not None and not self.speedup > 1:
            raise EdgepruneError(
                f"--speedup must be > 1 (times faster than the baseline), got {self.speedup}"
            )
        if self.steps < 1 or self.probes_per_step < 1:
            raise EdgepruneError("steps and probes_per_step must be >= 1")
        if self.margin != "auto" and (isinstance(self.margin, str) or not 0 <= self.margin < 0.5):
            raise EdgepruneError(f"margin must be in [0, 0.5) or 'auto', got {self.margin!r}")
        if not 0 <= self.tolerance < 0.5:
            raise EdgepruneError("tolerance must be in [0, 0.5)")
        PruneConfig(0.0, self.importance, "global", self.max_layer_ratio).check(data="unchecked")

    def budget_at(self, reference_ms: float) -> float:
        """The budget in ms when the baseline runs ``reference_ms``: ``budget_ms``, or
        ``reference_ms / speedup``."""
        return float(self.budget_ms) if self.speedup is None else reference_ms / self.speedup


@dataclass
class Probe:
    """One measured candidate."""

    step: int
    ratio: float
    params: int
    macs: int
    predicted_ms: float
    measured_ms: float


@dataclass
class StepRecord:
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


@dataclass
class SearchResult:
    detector: Detector
    passed: bool
    budget_ms: float
    percentile: str
    baseline: dict[str, Any]
    final: dict[str, Any]
    steps: list[StepRecord]
    probes: list[Probe]
    checkpoint: Path
    artifact: Path
    message: str

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "detector"}
        return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}


class LatencyModel:
    """Latency as a function of MACs, interpolated between artifacts measured so far.

    Piecewise linear through the measured points: latency is not proportional to MACs (fixed
    per-layer costs, memory-bound layers), but between two nearby measured architectures of
    the same family it is close to a straight line.
    """

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def add(self, macs: float, ms: float) -> None:
        self.points.append((float(macs), float(ms)))

    def predict(self, macs: float) -> float:
        """Latency at ``macs``: along the line through the measured points nearest in MACs
        (bracketing ``macs`` where possible), proportional to MACs while only one point exists.

        Points closer than ``MERGE`` (relative MACs) are averaged first: two probes of nearly the
        same size differ mostly by timing noise, and a line through them would extrapolate that
        noise. Outside the measured range the nearest segment at least ``SPAN`` wide is extended,
        its slope kept between ``FLAT`` x the least-squares slope of all points (a flatter segment
        is noise: extended, it sent a probe of run 6 of ``benchmarks/budget_search.py`` to 0.11
        GMACs for a 7.6 ms goal, measured 2.9 ms) and the nearest point's latency per MAC (a
        steeper one would mean a negative fixed cost).
        """
        if not self.points:
            raise ValueError("no measured point yet")
        pts = self._merged()
        if len(pts) == 1:
            x0, y0 = pts[0]
            return float(y0 * macs / max(x0, 1.0))
        below = [p for p in pts if p[0] <= macs]
        above = [p for p in pts if p[0] > macs]
        if below and above:
            (x0, y0), (x1, y1) = below[-1], above[0]
        else:
            near = min(pts, key=lambda p: abs(p[0] - macs))
            wide = [p for p in pts if abs(p[0] - near[0]) >= self.SPAN * max(near[0], 1.0)]
            if not wide:
                return float(near[1] * macs / max(near[0], 1.0))
            other = min(wide, key=lambda p: abs(p[0] - near[0]))
            (x0, y0), (x1, y1) = sorted([near, other])
            slope = (y1 - y0) / (x1 - x0)
            if len(pts) >= 3 and slope > 0:
                fit = float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0])
                slope = min(max(slope, self.FLAT * fit), near[1] / max(near[0], 1.0))
                return float(near[1] + slope * (macs - near[0]))
        slope = (y1 - y0) / (x1 - x0)
        if slope <= 0:  # noise made a larger model faster: proportional to the nearest point
            xn, yn = min(pts, key=lambda p: abs(p[0] - macs))
            return float(yn * macs / max(xn, 1.0))
        return float(y0 + slope * (macs - x0))

    MERGE = 0.05
    SPAN = 0.15
    FLAT = 0.85

    def _merged(self) -> list[tuple[float, float]]:
        clusters: list[list[tuple[float, float]]] = []
        for x, y in sorted(self.points):
            if clusters and x - clusters[-1][0][0] <= self.MERGE * max(clusters[-1][0][0], 1.0):
                clusters[-1].append((x, y))
            else:
                clusters.append([(x, y)])
        return [(sum(p[0] for p in c) / len(c), sum(p[1] for p in c) / len(c)) for c in clusters]


Meter = Callable[[Detector, str], float]
"""Measures a candidate: ``meter(detector, name) -> latency in ms at the budget's percentile``."""

MARGIN_MIN, MARGIN_MAX, AUTO_TIMINGS = 0.03, 0.4, 5


def auto_margin(reference_timings: list[float]) -> float:
    """The ``"auto"`` margin: ``1 - median / p90`` of the baseline's timings, within
    [``MARGIN_MIN``, ``MARGIN_MAX``]. A candidate measured at ``r x`` the baseline's median then
    meets ``budget`` also when the machine runs at the baseline's p90, if ``r x median <= budget x
    (1 - margin)``. Fewer than ``AUTO_TIMINGS`` timings say nothing of the spread: ``MARGIN_MIN``."""
    if len(reference_timings) < AUTO_TIMINGS:
        return MARGIN_MIN
    median, p90 = np.percentile(reference_timings, [50, 90])
    return float(min(MARGIN_MAX, max(MARGIN_MIN, 1 - median / p90)))


def search_budget(
    detector: Detector,
    config: SearchConfig,
    *,
    meter: Meter,
    round_to: int,
    imgsz: int,
    out: Path,
    data: str | Path | None = None,
    finetune: Callable[[Detector, int, str], None] | None = None,
    evaluate: Callable[[Detector], dict[str, float]] | None = None,
    check: Meter | None = None,
    reference_timings: Callable[[], list[float]] | None = None,
    resume: bool = False,
    say: Callable[[str], None] = print,
) -> tuple[Detector, list[StepRecord], list[Probe], LatencyModel, dict[str, Any]]:
    """Prune ``detector`` (a copy) step by step until ``meter`` says it meets the budget.

    Returns the pruned detector, the steps, every probe, the fitted latency model and the
    baseline's record. ``finetune(detector, epochs, name)`` and ``evaluate(detector)`` are called
    between steps when given. ``check(detector, name) -> ms``, when given, times the model that
    would be the last one as the final verdict will (on its own; ``ArtifactMeter.alone``) *before*
    its fine-tuning, since latency does not depend on the weights: if it runs slower than the meter
    said and misses the goal, the goal is lowered by that factor and one more step follows, so the
    final fine-tuning is spent once, on the model that is kept. Raises nothing when the budget
    cannot be reached: the caller compares the last measured latency with the budget.
    ``reference_timings()`` gives the baseline's timings so far, for ``margin="auto"``; without it
    the auto margin stays at ``MARGIN_MIN``.
    """
    config.check()
    out = Path(out)
    state_path = out / "search" / "state.json"
    (out / "search").mkdir(parents=True, exist_ok=True)
    correction = 1.0  # lowered when the check on its own ran slower than the search's timing

    def margin() -> float:
        if config.margin != "auto":
            return float(config.margin)
        return auto_margin(reference_timings() if reference_timings is not None else [])

    def reference_now() -> float:
        """The baseline's latency in the meter's frame: the median of its timings so far (the meter
        reports a candidate as that x the candidate's ratio to the baseline), or its one timing."""
        timings = reference_timings() if reference_timings is not None else []
        return float(np.median(timings)) if timings else baseline_ms

    def budget_now() -> float:
        """The budget in the meter's frame."""
        return config.budget_at(reference_now())

    def goal_now() -> float:
        return budget_now() * (1 - margin()) * correction

    def step_goal() -> float:
        """Step ``k``'s goal in the meter's frame now: the planned steps walk from the baseline's
        latency to the final goal in equal parts."""
        if k > planned:
            return goal_now()
        return reference_now() - (reference_now() - goal_now()) * k / planned

    def timed(candidate: Detector, name: str) -> float:
        """``meter``, keeping the latency model's baseline point in the meter's frame: the baseline's
        first timing was alone, and a machine running faster or slower since moves the frame."""
        ms = meter(candidate, name)
        model.points[0] = (model.points[0][0], reference_now())
        return ms

    model = LatencyModel()
    steps: list[StepRecord] = []
    probes: list[Probe] = []
    current = detector.clone()
    base_counts = current.count(imgsz)

    state = _read_state(state_path, config) if resume else None
    if state is not None:
        steps = [StepRecord(**s) for s in state["steps"]]
        probes = [Probe(**p) for p in state["probes"]]
        model.points = [tuple(p) for p in state["points"]]
        baseline = state["baseline"]
        correction = state.get("correction", 1.0)
        if steps:
            from edgeprune.models import load_model

            current = load_model(steps[-1].checkpoint)
        say(f"resuming after step {len(steps)} ({state_path})")
        # the meter times every candidate against the baseline: it needs it again (a fresh meter
        # would take the first candidate for its reference)
        again = meter(detector.clone(), "baseline")
        say(
            f"baseline timed again as the reference: {again:.2f} ms (was {state['baseline']['measured_ms']:.2f})"
        )
    else:
        t0 = time.perf_counter()
        baseline_ms = meter(current, "baseline")
        baseline = {**base_counts, "measured_ms": baseline_ms, "seconds": round(time.perf_counter() - t0, 1)}
        model.add(base_counts["macs"], baseline_ms)
        say(
            f"baseline: {base_counts['params'] / 1e6:.2f}M params, {base_counts['macs'] / 1e9:.2f} GMACs, "
            f"{baseline_ms:.2f} ms {config.percentile} measured; budget {budget_now():.2f} ms"
            + (f" ({config.speedup:g}x faster)" if config.speedup else "")
        )
    baseline_ms = baseline["measured_ms"]
    last_ms = steps[-1].measured_ms if steps else baseline_ms
    goal_final = goal_now()
    if last_ms <= goal_final:
        say("already within the budget: nothing to prune" if not steps else "budget reached")
        return current, steps, probes, model, baseline

    planned = config.steps
    announced = MARGIN_MIN  # the auto margin last said on screen
    final_tuned = False  # whether the last step taken got the final epochs
    started = time.perf_counter()
    k = len(steps)
    while k < planned + config.extra_steps:
        k += 1
        goal_final = goal_now()
        if config.margin == "auto" and abs(margin() - announced) > 0.005:
            announced = margin()
            say(
                f"step {k}: aiming at {goal_final:.2f} ms, {margin():.0%} under the budget: the baseline's "
                f"timings so far ran up to {1 / (1 - margin()):.2f}x their median (p90)"
            )
        t_step = time.perf_counter()
        candidate, probe = _step(current, k, step_goal, config, model, round_to, imgsz, data, timed, say)
        goal = step_goal()
        probes += probe
        if candidate is None:
            say(f"step {k}: no channel left to remove within the per-layer limits; stopping")
            if steps and not final_tuned and finetune is not None and config.final_epochs > 0:
                # the previous step, tuned as an intermediate one, is the model kept after all
                last = steps[-1]
                finetune(current, config.final_epochs, f"step{last.step}-final")
                last.metrics = evaluate(current) if evaluate is not None else last.metrics
                current.save(Path(last.checkpoint), {"search_step": last.step, "ratio": last.ratio})
                _write_state(state_path, config, baseline, steps, probes, model, goal_final, correction)
            break
        cand, ratio, counts, predicted, measured = candidate
        current = cand
        goal_final = goal_now()  # the auto margin has seen this step's timings of the baseline too
        if data is not None and config.bn_images > 0:
            current.recalibrate_batchnorm(data, imgsz=imgsz, images=config.bn_images)
        last_step = measured <= goal_final * (1 + config.tolerance) or k >= planned + config.extra_steps
        corrected, checked = False, None
        if last_step and check is not None and k < planned + config.extra_steps:
            checked = check(current, f"step{k}-check")
            if checked > goal_final * (1 + config.tolerance) and checked > measured:
                correction *= measured / checked
                goal_final = goal_now()
                corrected, last_step = True, False
                say(
                    f"step {k}: on its own it runs {checked:.2f} ms, {checked / measured - 1:.0%} above the "
                    f"interleaved timing; one more step, aiming at {goal_final:.2f} ms"
                )
        # the final epochs go to the model that is kept, once; a step followed by another gets the step epochs
        epochs = config.final_epochs if last_step else config.step_epochs
        final_tuned = last_step
        if finetune is not None and epochs > 0:
            finetune(current, epochs, f"step{k}")
        metrics = evaluate(current) if evaluate is not None else {}
        ckpt = current.save(out / "search" / f"step{k}.pt", {"search_step": k, "ratio": ratio})
        record = StepRecord(
            k, goal, ratio, counts["params"], counts["macs"], predicted, measured, str(ckpt), metrics,
            round(time.perf_counter() - t_step, 1), checked,
        )  # fmt: skip
        steps.append(record)
        _write_state(state_path, config, baseline, steps, probes, model, goal_final, correction)
        per_step = (time.perf_counter() - started) / max(
            1, len(steps) - (len(state["steps"]) if state else 0)
        )
        left = max(0, planned - k) * per_step
        acc = f", mAP50-95 {metrics['map50_95']:.3f}" if "map50_95" in metrics else ""
        eta = f"about {left / 60:.0f} min left" if left >= 120 else f"about {left:.0f} s left"
        say(
            f"step {k}/{planned}: {measured:.2f} ms measured (predicted {predicted:.2f}) vs budget "
            f"{budget_now():.2f} ms; {counts['params'] / 1e6:.2f}M params{acc}; {eta}"
        )
        if last_step:
            break
        if k >= planned and not corrected:
            say(
                f"step {k}: {measured:.2f} ms is above the goal of {goal_final:.2f} ms ({margin():.0%} under the "
                f"budget of {budget_now():.2f}); one more step"
            )
    return current, steps, probes, model, baseline


def _step(
    current: Detector,
    k: int,
    goal_of: Callable[[], float],
    config: SearchConfig,
    model: LatencyModel,
    round_to: int,
    imgsz: int,
    data: str | Path | None,
    meter: Meter,
    say: Callable[[str], None],
) -> tuple[tuple[Detector, float, dict[str, int], float, float] | None, list[Probe]]:
    """Choose, measure and correct this step's ratio; returns the accepted candidate. ``goal_of()``
    is the step's goal now (it moves with the baseline's timings when the budget is a speed-up)."""
    cache: dict[float, tuple[Detector, dict[str, int]]] = {}
    current_macs = current.count(imgsz)["macs"]

    def candidate(ratio: float) -> tuple[Detector, dict[str, int]]:
        ratio = round(ratio, 3)
        if ratio not in cache:
            cand = current.clone()
            pc = PruneConfig(ratio, config.importance, "global", config.max_layer_ratio, round_to)
            report = prune_detector(cand, pc, imgsz=imgsz, data=data)
            cache[ratio] = (cand, report.after)
        return cache[ratio]

    hi = round(config.max_layer_ratio - 0.005, 3)
    floor_macs = candidate(hi)[1]["macs"]
    if floor_macs >= current_macs * 0.99:
        return None, []
    probes: list[Probe] = []
    best: tuple[Detector, float, dict[str, int], float, float] | None = None
    for _ in range(config.probes_per_step):
        goal = goal_of()
        ratio = _ratio_for(goal, model, candidate, hi)
        cand, counts = candidate(ratio)
        predicted = model.predict(counts["macs"])
        measured = meter(cand, f"step{k}-r{ratio:.3f}")
        model.add(counts["macs"], measured)
        goal = goal_of()
        probes.append(Probe(k, ratio, counts["params"], counts["macs"], predicted, measured))
        say(
            f"  step {k} probe: ratio {ratio:.3f} -> {counts['macs'] / 1e9:.2f} GMACs, "
            f"predicted {predicted:.2f} ms, measured {measured:.2f} ms (goal {goal:.2f})"
        )
        best = _better(best, (cand, ratio, counts, predicted, measured), goal * (1 + config.tolerance))
        if goal * (1 - 2 * config.tolerance) <= measured <= goal * (1 + config.tolerance):
            break  # close enough: more pruning than needed costs accuracy, less misses the goal
        if measured > goal and ratio >= hi:
            break  # the step cannot go further; the next one continues from here
    return best, probes


def _better(best: Any, new: Any, limit: float) -> Any:
    """Of two probes, the one to keep: within ``limit`` beats above it; within it, the larger
    model (less pruning, more accuracy); above it, the faster one."""
    if best is None:
        return new
    best_ok, new_ok = best[4] <= limit, new[4] <= limit
    if best_ok != new_ok:
        return new if new_ok else best
    if new_ok:
        return new if new[2]["macs"] > best[2]["macs"] else best
    return new if new[4] < best[4] else best


def _ratio_for(
    goal: float, model: LatencyModel, candidate: Callable[[float], tuple[Detector, dict[str, int]]], hi: float
) -> float:
    """The smallest ratio whose predicted latency is at most ``goal`` (bisection on the ratio)."""
    if model.predict(candidate(hi)[1]["macs"]) > goal:
        return hi
    lo_r, hi_r = 0.0, hi
    for _ in range(8):
        mid = (lo_r + hi_r) / 2
        if model.predict(candidate(mid)[1]["macs"]) <= goal:
            hi_r = mid
        else:
            lo_r = mid
        if hi_r - lo_r < 0.01:
            break
    return round(hi_r, 3)


def _read_state(path: Path, config: SearchConfig) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    if state.get("version") != STATE_VERSION:
        raise EdgepruneError(f"{path}: written by another edgeprune version; start afresh without --resume")
    saved = state["config"]
    mismatch = [
        k for k, v in asdict(config).items() if k in saved and saved[k] != v and k not in _RESUME_FREE
    ]
    if mismatch:
        raise EdgepruneError(
            f"{path}: the interrupted search ran with other settings ({', '.join(mismatch)}); "
            "use the same settings to resume, or another --out"
        )
    return state


_RESUME_FREE = {"final_epochs", "step_epochs", "rounds", "iterations", "warmup"}


def _write_state(
    path: Path,
    config: SearchConfig,
    baseline: dict[str, Any],
    steps: list[StepRecord],
    probes: list[Probe],
    model: LatencyModel,
    goal_ms: float,
    correction: float,
) -> None:
    state = {
        "version": STATE_VERSION,
        "config": asdict(config),
        "goal_ms": goal_ms,  # the final goal when this step was taken
        "correction": correction,  # < 1 when a check on its own ran slower than the search's timing
        "baseline": baseline,
        "steps": [asdict(s) for s in steps],
        "probes": [asdict(p) for p in probes],
        "points": model.points,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(state, indent=2, default=lambda o: None if isinstance(o, float) and math.isnan(o) else o)
    )
    tmp.replace(path)  # a crash mid-write leaves the previous state intact
