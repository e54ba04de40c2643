"""Prune to a latency budget, driven by latency measured on the target's runtime and precision.

:class:`BudgetSearcher` runs in three stages, each a method:

1. ``begin``: time the baseline (the meter's reference), or resume an interrupted search from
   ``OUT/search/state.json`` (the baseline is timed again: the meter needs its reference);
2. ``run_steps``: steps walk the latency down from the baseline to the budget minus a margin
   (:class:`Goals`). In each step every search action (``pruning/actions.py``: channels, whole
   repeats) proposes the amount that a latency model (:class:`~edgeprune.pruning.latency_model.LatencyModel`,
   refitted on every artifact measured so far) predicts to land on the step's goal; the candidate
   is exported and *measured* (never a FLOPs proxy), and the amount corrected, up to
   ``probes_per_step`` times. With several actions, candidates within the goal are compared by
   a quick accuracy proxy (``proxy``: the loss on a few validation batches). BatchNorm statistics are re-estimated, the model fine-tuned and
   evaluated between steps, and the state written after every step;
3. ``finish``: the kept model is saved and exported, profiled on its own as ``edgeprune profile``
   does (alternating with the baseline where the meter can), and judged. The
   :class:`SearchResult` holds everything the API, the report and the CLI show.

Timing on a shared machine drifts, so a meter reports a candidate in the frame of the
baseline's timings (``profiling/meters.py``); the goals follow that frame, and the final check
tells the latency model's error apart from the machine's drift.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.exporting import export_detector
from edgeprune.models.base import Detector
from edgeprune.profiling.budget import judge
from edgeprune.profiling.meters import LatencyMeter, reference_ms
from edgeprune.progress import track
from edgeprune.pruning.actions import SEARCH_ACTIONS, Candidate, Proposals, SearchAction
from edgeprune.pruning.latency_model import LatencyModel
from edgeprune.pruning.options import SearchConfig
from edgeprune.pruning.records import Probe, SearchResult, StepRecord, closing_message
from edgeprune.targets import Target

__all__ = [
    "BudgetSearcher", "Goals", "LatencyModel", "Probe", "SearchConfig", "SearchResult", "StepRecord", "auto_margin",
]  # fmt: skip

STATE_VERSION = 1
MARGIN_MIN, MARGIN_MAX, AUTO_TIMINGS = 0.03, 0.4, 5
_RESUME_FREE = {"final_epochs", "step_epochs", "rounds", "iterations", "warmup"}


def auto_margin(reference_timings: Sequence[float]) -> float:
    """The ``"auto"`` margin: ``1 - median / p90`` of the baseline's timings, within
    [``MARGIN_MIN``, ``MARGIN_MAX``]. A candidate measured at ``r x`` the baseline's median then
    meets ``budget`` also when the machine runs at the baseline's p90, if ``r x median <= budget x
    (1 - margin)``. Fewer than ``AUTO_TIMINGS`` timings say nothing of the spread: ``MARGIN_MIN``."""
    if len(reference_timings) < AUTO_TIMINGS:
        return MARGIN_MIN
    median, p90 = np.percentile(reference_timings, [50, 90])
    return float(min(MARGIN_MAX, max(MARGIN_MIN, 1 - median / p90)))


class Goals:
    """Where the search aims, in the meter's frame: the policy, apart from any model.

    ``timings()`` gives the baseline's timings so far (the meter's ``reference_timings``). The
    final goal is the budget minus the margin, times ``correction``; the planned steps walk from
    the baseline's latency to it in equal parts.
    """

    def __init__(self, config: SearchConfig, timings: Callable[[], Sequence[float]], correction: float = 1.0):
        self.config, self.timings, self.correction = config, timings, correction

    def margin(self) -> float:
        """The fraction aimed under the budget: the config's, or for ``"auto"`` ``auto_margin``."""
        if self.config.margin == "auto":
            return auto_margin(self.timings())
        return float(self.config.margin)

    def reference_ms(self) -> float:
        """The baseline's latency now: the median of its timings so far."""
        return float(np.median(self.timings()))

    def budget_ms(self) -> float:
        return self.config.budget_at(self.reference_ms())

    def final(self) -> float:
        return self.budget_ms() * (1 - self.margin()) * self.correction

    def step(self, k: int) -> float:
        """Step ``k``'s goal: a planned step's share of the way down, later steps the final goal."""
        planned = self.config.steps
        if k > planned:
            return self.final()
        return self.reference_ms() - (self.reference_ms() - self.final()) * k / planned

    def reached(self, measured_ms: float) -> bool:
        """Whether a measured latency is within the final goal's tolerance."""
        return measured_ms <= self.final() * (1 + self.config.tolerance)

    def correct(self, measured_ms: float, checked_ms: float) -> bool:
        """After the would-be last model ran ``checked_ms`` on its own against ``measured_ms`` in
        the search: when that misses the goal and is slower, lower the goal by the factor (the next
        step aims so far under) and return True."""
        if self.reached(checked_ms) or checked_ms <= measured_ms:
            return False
        self.correction *= measured_ms / checked_ms
        return True

    def margin_record(self) -> dict[str, Any]:
        """The margin aimed at, and for ``auto`` what it was read from (``prune.json``)."""
        if self.config.margin != "auto":
            return {"setting": self.config.margin, "fraction": self.config.margin}
        timings = list(self.timings())
        out: dict[str, Any] = {
            "setting": "auto",
            "fraction": auto_margin(timings),
            "reference_timings": len(timings),
        }
        if timings:
            out["reference_p50_ms"], out["reference_p90_ms"] = (
                float(v) for v in np.percentile(timings, [50, 90])
            )
        return out


@dataclass
class _Measured:
    """A candidate with its predicted and measured latency."""

    candidate: Candidate
    predicted_ms: float
    measured_ms: float
    within: bool  # within the step's goal (and its tolerance) as the goal stood when it was measured
    proxy: float | None = None  # the accuracy proxy (lower is better), when candidates are compared by it


class BudgetSearcher:
    """Prune a copy of ``detector`` step by step until ``meter`` says it meets the budget.

    Args:
        detector: the unpruned model (left untouched).
        config: the search's settings.
        meter: how candidates are timed (``profiling.meters``).
        target: the target whose alignment (``round_to``) and image size the candidates use.
        out: output folder: ``OUT/search/`` (state, step checkpoints), ``OUT/pruned.pt`` and the
            final artifact.
        data: a dataset for gradient-based importance and BatchNorm re-estimation.
        calib: INT8 targets: calibration images of the final artifact (the recipe's count of them).
        finetune: ``finetune(detector, epochs, name)``, called between steps when given; a
            resumed search passes ``resume=True`` to one that takes it, to continue a step's
            fine-tuning killed mid-way from its last finished epoch.
        evaluate: ``evaluate(detector) -> metrics``, called after each step when given.
        proxy: ``proxy(detector) -> loss``, a quick accuracy proxy (lower is better) by which a
            step compares candidates of different actions (``config.actions``) within its goal;
            without it, or with one action, the larger model within the goal is kept.
        say: where progress lines go.
    """

    def __init__(
        self,
        detector: Detector,
        config: SearchConfig,
        meter: LatencyMeter,
        *,
        target: Target,
        out: str | Path,
        data: str | Path | None = None,
        calib: str | Path | None = None,
        finetune: Callable[[Detector, int, str], None] | None = None,
        evaluate: Callable[[Detector], dict[str, float]] | None = None,
        proxy: Callable[[Detector], float] | None = None,
        say: Callable[[str], None] = print,
    ):
        self.source, self.config, self.meter, self.target = detector, config, meter, target
        self.out, self.data, self.calib, self.say = Path(out), data, calib, say
        self.finetune, self.evaluate = finetune, evaluate
        self.imgsz, self.round_to = target.imgsz, target.round_to
        self.actions: list[SearchAction] = [
            SEARCH_ACTIONS.get(a)(config, round_to=self.round_to, imgsz=self.imgsz, data=data)
            for a in config.actions
        ]
        self.proxy = proxy if len(self.actions) > 1 else None
        self.goals = Goals(config, lambda: meter.reference_timings)
        self.model = LatencyModel()
        self.steps: list[StepRecord] = []
        self.probes: list[Probe] = []
        self.baseline: dict[str, Any] = {}
        self.current = detector
        self._resumed_steps = 0
        self._final_tuned = False  # whether the last step taken got the final epochs
        self.pending: dict[str, Any] | None = None  # the step kept, until it is fine-tuned and saved
        self._resumed = False

    @property
    def state_path(self) -> Path:
        return self.out / "search" / "state.json"

    def search(self, resume: bool = False) -> SearchResult:
        """All three stages: ``begin``, ``run_steps``, ``finish``."""
        self.begin(resume)
        self.run_steps()
        return self.finish()

    # --- stage 1: baseline and resume ---------------------------------------------------------
    def begin(self, resume: bool = False) -> None:
        """Time the baseline as the meter's reference, or resume from the saved state."""
        (self.out / "search").mkdir(parents=True, exist_ok=True)
        state = self._read_state() if resume else None
        if state is not None:
            self._resumed = True  # a fine-tuning the interrupted run had begun continues
            self.load_state_dict(state)
            done = f"in step {len(self.steps) + 1}" if self.pending else f"after step {len(self.steps)}"
            self.say(f"resuming {done} ({self.state_path})")
            # the meter times every candidate against the baseline: it needs it again
            again = self.meter.measure(self.source.clone(), "baseline")
            self.say(
                f"baseline timed again as the reference: {again:.2f} ms (was {self.baseline['measured_ms']:.2f})"
            )
            return
        self.current = self.source.clone()
        counts = self.current.count(self.imgsz)
        t0 = time.perf_counter()
        ms = self.meter.measure(self.current, "baseline")
        self.baseline = {
            **counts, "measured_ms": ms, "seconds": round(time.perf_counter() - t0, 1),
            "channels": self.source.channels(), "layer_macs": self.source.layer_macs(self.imgsz),
        }  # fmt: skip
        self.model.add(counts["macs"], ms)
        faster = f" ({self.config.speedup:g}x faster)" if self.config.speedup else ""
        self.say(
            f"baseline: {counts['params'] / 1e6:.2f}M params, {counts['macs'] / 1e9:.2f} GMACs, "
            f"{ms:.2f} ms {self.config.percentile} measured; budget {self.goals.budget_ms():.2f} ms{faster}"
        )

    # --- stage 2: steps and probes ------------------------------------------------------------
    def run_steps(self) -> None:
        """Take steps until the goal is reached, the step limit is hit or nothing is left to remove.
        A step that was being fine-tuned when the search was interrupted is completed first."""
        if self.pending is not None:
            k = self.pending["record"]["step"]
            self.say(f"step {k}: completing its fine-tuning ({self.pending['epochs']} epochs)")
            if not self._complete_step(time.perf_counter(), resume=True):
                return
        last_ms = self.steps[-1].measured_ms if self.steps else self.baseline["measured_ms"]
        if last_ms <= self.goals.final():
            self.say("already within the budget: nothing to prune" if not self.steps else "budget reached")
            return
        started, announced = time.perf_counter(), MARGIN_MIN
        k, limit = len(self.steps), self.config.steps + self.config.extra_steps
        with track(limit - k, "search steps") as bar:
            while k < limit:
                k += 1
                if self.config.margin == "auto" and abs(self.goals.margin() - announced) > 0.005:
                    announced = self.goals.margin()
                    self.say(
                        f"step {k}: aiming at {self.goals.final():.2f} ms, {announced:.0%} under the budget: the "
                        f"baseline's timings so far ran up to {1 / (1 - announced):.2f}x their median (p90)"
                    )
                if not self._take_step(k, started):
                    break
                bar.advance()

    def _take_step(self, k: int, started: float) -> bool:
        """Probe, keep and check step ``k``, then complete it (``_complete_step``); False when the
        search ends."""
        t_step = time.perf_counter()
        best = self._probe(k)
        goal = self.goals.step(k)
        if best is None:
            self.say(f"step {k}: no channel left to remove within the per-layer limits; stopping")
            self._tune_kept_model()
            return False
        cand, measured = best.candidate, best.measured_ms
        self.current = cand.detector
        if self.data is not None and self.config.bn_images > 0:
            self.current.recalibrate_batchnorm(self.data, imgsz=self.imgsz, images=self.config.bn_images)
        last, checked, corrected = self._is_last(k, measured)
        record = StepRecord(
            k, goal, cand.amount, cand.params, cand.macs, best.predicted_ms, measured, "", {}, 0.0, checked,
            cand.action, cand.removed,
        )  # fmt: skip
        # the final epochs go to the model that is kept, once; a step followed by another gets the step epochs
        epochs = self.config.final_epochs if last else self.config.step_epochs
        self.pending = {
            "record": asdict(record), "last": last, "corrected": corrected, "epochs": epochs,
            "seconds": time.perf_counter() - t_step, "model": None,
        }  # fmt: skip
        if self.finetune is not None and epochs > 0:  # a kill while fine-tuning resumes it, not the step
            untuned = self.current.save(self.out / "search" / f"step{k}-untuned.pt", {"search_step": k})
            self.pending["model"] = str(untuned)
            self._write_state()
        return self._complete_step(started)

    def _complete_step(self, started: float, resume: bool = False) -> bool:
        """Fine-tune, evaluate and save the step in ``self.pending``; with ``resume``, its
        fine-tuning continues from the last finished epoch. False when the search ends."""
        pending, t0 = self.pending, time.perf_counter()
        record = StepRecord(**pending["record"])
        k = record.step
        self._final_tuned = pending["last"]
        if self.finetune is not None and pending["epochs"] > 0:
            self._finetune(pending["epochs"], f"step{k}", resume)
        record.metrics = self.evaluate(self.current) if self.evaluate is not None else {}
        record.checkpoint = str(
            self.current.save(self.out / "search" / f"step{k}.pt", {"search_step": k, "ratio": record.ratio})
        )
        record.seconds = round(pending["seconds"] + time.perf_counter() - t0, 1)
        self.steps.append(record)
        self.pending = None
        self._write_state()
        if pending["model"]:
            Path(pending["model"]).unlink(missing_ok=True)
        self._progress(record, started)
        if pending["last"]:
            return False
        if k >= self.config.steps and not pending["corrected"]:
            self.say(
                f"step {k}: {record.measured_ms:.2f} ms is above the goal of {self.goals.final():.2f} ms "
                f"({self.goals.margin():.0%} under the budget of {self.goals.budget_ms():.2f}); one more step"
            )
        return True

    def _finetune(self, epochs: int, name: str, resume: bool) -> None:
        """``finetune`` of the current model; ``resume`` is passed on to a function that takes it."""
        assert self.finetune is not None
        if resume and "resume" in inspect.signature(self.finetune).parameters:
            self.finetune(self.current, epochs, name, resume=True)
        else:
            self.finetune(self.current, epochs, name)

    def _is_last(self, k: int, measured: float) -> tuple[bool, float | None, bool]:
        """Whether step ``k`` is the last one, its stand-alone timing and whether that lowered the goal.

        Latency does not depend on the weights, so the would-be last model is timed as the final
        verdict will time it *before* its fine-tuning: when it runs slower than the search said and
        misses the goal, the goal is corrected and one more step follows, so the final fine-tuning
        is spent once, on the model that is kept."""
        at_limit = k >= self.config.steps + self.config.extra_steps
        last = self.goals.reached(measured) or at_limit
        if not last or at_limit:
            return last, None, False
        checked = self.meter.alone(self.current, f"step{k}-check")
        if checked is None or not self.goals.correct(measured, checked):
            return True, checked, False
        self.say(
            f"step {k}: on its own it runs {checked:.2f} ms, {checked / measured - 1:.0%} above the "
            f"interleaved timing; one more step, aiming at {self.goals.final():.2f} ms"
        )
        return False, checked, True

    def _probe(self, k: int) -> _Measured | None:
        """Choose, measure and correct this step's amount for every action; the best candidate."""
        current_macs = self.current.count(self.imgsz)["macs"]
        offers = [(a, Proposals(a, self.current)) for a in self.actions]
        offers = [(a, p) for a, p in offers if p.at(a.limit).macs < current_macs * 0.99]
        if not offers:
            return None
        best: _Measured | None = None
        tol = self.config.tolerance
        with track(self.config.probes_per_step * len(offers), f"step {k} probes") as bar:
            for _ in range(self.config.probes_per_step):
                close, stuck = [], []
                for action, proposals in offers:
                    goal = self.goals.step(k)
                    cand = proposals.at(self._amount_for(goal, proposals, action.limit))
                    predicted = self.model.predict(cand.macs)
                    name = f"step{k}-{cand.action}{cand.amount:.3f}"
                    measured, first, still = self._retime_if_reversed(
                        k, cand, name, self._measure(cand.detector, name)
                    )
                    self.model.add(cand.macs, measured)
                    goal = self.goals.step(k)
                    proxy = self.proxy(cand.detector) if self.proxy is not None else None
                    self.probes.append(
                        Probe(
                            k,
                            cand.amount,
                            cand.params,
                            cand.macs,
                            predicted,
                            measured,
                            cand.action,
                            proxy,
                            first,
                            still,
                        )
                    )
                    loss = f", proxy loss {proxy:.3f}" if proxy is not None else ""
                    self.say(
                        f"  step {k} probe: {cand.action} {cand.amount:.3f} -> {cand.macs / 1e9:.2f} GMACs, "
                        f"predicted {predicted:.2f} ms, measured {measured:.2f} ms (goal {goal:.2f}){loss}"
                    )
                    bar.advance()
                    # judged against the goal of its own measurement: the goal moves a little with every
                    # timing of the baseline, and a probe kept for that alone would be chosen by noise
                    within = measured <= goal * (1 + tol)
                    best = _better(best, _Measured(cand, predicted, measured, within, proxy))
                    # close enough: more pruning than needed costs accuracy, less misses the goal
                    close.append(goal * (1 - 2 * tol) <= measured <= goal * (1 + tol))
                    stuck.append(measured > goal and cand.amount >= action.limit)
                if any(close) or all(stuck):  # stuck: the step cannot go further; the next one continues
                    break
        return best

    def _retime_if_reversed(
        self, k: int, cand: Candidate, name: str, ms: float
    ) -> tuple[float, float | None, bool]:
        """A probe measured slower than a larger model timed before it (beyond the tolerance) is
        timed once more, and the lower timing kept: a burst of load on the machine only ever slows
        a timing, and a reversed point sends the latency model's next prediction far off (it read a
        larger model as faster, then jumped from 0.33 to 0.60 of the channels in one probe on an
        INT8 ONNX Runtime target). Returns the timing kept, the first one when it was timed twice,
        and whether it is still reversed (``LatencyModel`` then pools the two points)."""
        faster = self._faster_larger(cand.macs, ms)
        if faster is None:
            return ms, None, False
        macs, larger_ms = faster
        self.say(
            f"  step {k} probe: {cand.macs / 1e9:.2f} GMACs measured {ms:.2f} ms, slower than "
            f"{macs / 1e9:.2f} GMACs at {larger_ms:.2f} ms; timing it again"
        )
        again = self._measure(cand.detector, f"{name}-again")
        kept = min(ms, again)
        still = self._faster_larger(cand.macs, kept) is not None
        self.say(
            f"  step {k} probe: timed again {again:.2f} ms"
            + ("; still slower than the larger model, the two are pooled" if still else "")
        )
        return kept, ms, still

    def _faster_larger(self, macs: float, ms: float) -> tuple[float, float] | None:
        """The fastest measured point with clearly more MACs than ``macs`` that ran more than the
        tolerance faster than ``ms``, if any."""
        larger = [
            (x, y) for x, y in self.model.points
            if x > macs * (1 + LatencyModel.MERGE) and ms > y * (1 + self.config.tolerance)
        ]  # fmt: skip
        return min(larger, key=lambda p: p[1]) if larger else None

    def _measure(self, detector: Detector, name: str) -> float:
        """The meter's timing; the latency model's baseline point follows the meter's frame."""
        ms = self.meter.measure(detector, name)
        self.model.points[0] = (self.model.points[0][0], self.goals.reference_ms())
        return ms

    def _amount_for(self, goal: float, proposals: Proposals, limit: float) -> float:
        """The smallest amount whose predicted latency is at most ``goal`` (bisection)."""
        if self.model.predict(proposals.at(limit).macs) > goal:
            return limit
        lo, hi = 0.0, limit
        for _ in range(8):
            mid = (lo + hi) / 2
            if self.model.predict(proposals.at(mid).macs) <= goal:
                hi = mid
            else:
                lo = mid
            if hi - lo < 0.01:
                break
        return round(hi, 3)

    def _tune_kept_model(self) -> None:
        """Nothing left to remove: the previous step, tuned as an intermediate one, is kept after all
        and gets the final epochs."""
        if not self.steps or self._final_tuned or self.finetune is None or self.config.final_epochs <= 0:
            return
        last = self.steps[-1]
        self._finetune(self.config.final_epochs, f"step{last.step}-final", resume=self._resumed)
        last.metrics = self.evaluate(self.current) if self.evaluate is not None else last.metrics
        self.current.save(Path(last.checkpoint), {"search_step": last.step, "ratio": last.ratio})
        self._final_tuned = True  # saved: a run resumed after this does not tune the kept model again
        self._write_state()

    def _progress(self, record: StepRecord, started: float) -> None:
        k, metrics = record.step, record.metrics
        per_step = (time.perf_counter() - started) / max(1, len(self.steps) - self._resumed_steps)
        left = max(0, self.config.steps - k) * per_step
        acc = f", mAP50-95 {metrics['map50_95']:.3f}" if "map50_95" in metrics else ""
        eta = f"about {left / 60:.0f} min left" if left >= 120 else f"about {left:.0f} s left"
        self.say(
            f"step {k}/{self.config.steps}: {record.measured_ms:.2f} ms measured (predicted "
            f"{record.predicted_ms:.2f}) vs budget {self.goals.budget_ms():.2f} ms; {record.params / 1e6:.2f}M "
            f"params{acc}; {eta}"
        )

    # --- stage 3: final check -----------------------------------------------------------------
    def finish(self) -> SearchResult:
        """Save and export the kept model, profile it on its own and judge it."""
        if not self.steps and self.finetune is not None and self.config.final_epochs > 0:
            self._finetune(self.config.final_epochs, "final", resume=self._resumed)
        reference = reference_ms(self.meter) or self.baseline["measured_ms"]
        budget_in_search = self.config.budget_at(reference)
        checkpoint = self.current.save(
            self.out / "pruned.pt",
            {"budget_ms": budget_in_search, "speedup": self.config.speedup, "target": self.target.name,
             "steps": len(self.steps)},
        )  # fmt: skip
        # the kept model gets the recipe's full calibration; candidates only need it for latency
        export = export_detector(self.current, self.target, self.out, "pruned", calib=self.calib)
        check = self.meter.check(export.artifact)
        # a speed-up is judged against the baseline as timed alongside the final check, where it was
        budget = self.config.budget_at(check.reference_ms or reference)
        verdict = judge(check.stats, budget, self.config.percentile)
        last = self.steps[-1] if self.steps else None
        metrics = last.metrics if last and last.metrics else {}
        if self.evaluate is not None and not metrics:
            metrics = self.evaluate(self.current)
        result = SearchResult(
            self.current, self.config, self.round_to, verdict, check, export, checkpoint,
            self.current.count(self.imgsz), metrics, self.baseline, self.steps, self.probes, self.model.points,
            budget_in_search, last.predicted_ms if last else self.baseline["measured_ms"],
            last.measured_ms if last else self.baseline["measured_ms"], reference, self.goals.margin_record(), "",
        )  # fmt: skip
        result.message = closing_message(result, self.imgsz)
        if self.baseline.get("channels"):  # a search resumed from an older state has none
            result.layers = self.current.layer_changes(
                self.baseline["channels"], self.baseline.get("layer_macs", {}), self.imgsz
            )
        return result

    # --- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The search's state after the last completed step (``OUT/search/state.json``)."""
        return {
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "goal_ms": self.goals.final(),  # the final goal when this step was taken
            "correction": self.goals.correction,  # < 1 when a check on its own ran slower than the search
            "baseline": self.baseline,
            "steps": [asdict(s) for s in self.steps],
            "probes": [asdict(p) for p in self.probes],
            "points": self.model.points,
            "pending": self.pending,  # the step kept but not yet fine-tuned, or None
            "final_tuned": self._final_tuned,  # whether the last step's model got the final epochs
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: the last step's checkpoint becomes the current model."""
        from edgeprune.models import load_model

        self.steps = [StepRecord(**s) for s in state["steps"]]
        self.probes = [Probe(**p) for p in state["probes"]]
        self.model.points = [tuple(p) for p in state["points"]]
        self.baseline = state["baseline"]
        self.goals.correction = state.get("correction", 1.0)
        self._resumed_steps = len(self.steps)
        self.pending = state.get("pending")
        self._final_tuned = state.get("final_tuned", False)
        if self.pending is not None:
            self.current = load_model(self.pending["model"])
        else:
            self.current = load_model(self.steps[-1].checkpoint) if self.steps else self.source.clone()

    def _read_state(self) -> dict[str, Any] | None:
        path = self.state_path
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        if state.get("version") != STATE_VERSION:
            raise EdgepruneError(
                f"{path}: written by another edgeprune version; start afresh without resuming"
            )
        saved, ours = state["config"], json.loads(json.dumps(self.config.to_dict()))  # tuples as saved: lists
        mismatch = [k for k, v in ours.items() if k in saved and saved[k] != v and k not in _RESUME_FREE]
        if mismatch:
            raise EdgepruneError(
                f"{path}: the interrupted search ran with other settings ({', '.join(mismatch)}); "
                "use the same settings to resume, or another output folder"
            )
        return state

    def _write_state(self) -> None:
        text = json.dumps(
            self.state_dict(),
            indent=2,
            default=lambda o: None if isinstance(o, float) and math.isnan(o) else o,
        )
        from edgeprune.files import write_text_atomic

        write_text_atomic(self.state_path, text)  # a kill mid-write leaves the previous state intact


def _better(best: _Measured | None, new: _Measured) -> _Measured:
    """Of two probes, the one to keep: within the goal beats above it; within it, the lower
    accuracy proxy when both have one, else the larger model (less pruning, more accuracy); above
    it, the faster one."""
    if best is None:
        return new
    best_ok, new_ok = best.within, new.within
    if best_ok != new_ok:
        return new if new_ok else best
    if new_ok:
        if best.proxy is not None and new.proxy is not None:
            return new if new.proxy < best.proxy else best
        return new if new.candidate.macs > best.candidate.macs else best
    return new if new.measured_ms < best.measured_ms else best
