"""Per-group sensitivity: what pruning each group alone costs in accuracy and saves in measured ms.

``analyze`` prunes every prunable group (``prunable_groups``) on its own at a few ratios, the
least important channels first (the search's criterion), and for each candidate reads

* the accuracy cost: the loss on a few validation batches after re-estimating BatchNorm
  (``accuracy_proxy``), against the unpruned model's; with ``with_map`` also mAP50-95 on the
  validation split, and how well the two rank the candidates alike (Spearman's rho);
* the latency saved: the candidate's artifact measured by the meter on the target's runtime
  (interleaved against the baseline, as the search measures), against the baseline.

The result, ``analysis.json``, is what ``edgeprune analyze`` writes. A budget search given it
(``SearchConfig.sensitivity``) ranks groups by accuracy lost per ms saved, at the width a removal
would leave, instead of by channel importance alone (``Analysis.score``; channels inside a group
are still removed by importance).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError, OptionError
from edgeprune.models.base import Detector
from edgeprune.profiling.meters import LatencyMeter
from edgeprune.pruning.actions import PROXY_BN_IMAGES, accuracy_proxy
from edgeprune.pruning.options import SENSITIVITY_RATIOS as RATIOS
from edgeprune.pruning.options import PruneConfig
from edgeprune.pruning.pruner import prunable_groups, prune_detector
from edgeprune.targets import Target

ANALYSIS_VERSION = 1
MIN_SAVED_MS = 1e-3
"""A saving below this (or a measured slow-down) counts as this: the group buys no speed there."""


@dataclass
class Point:
    """One group pruned alone at one ratio."""

    ratio: float
    kept: int
    macs: int
    measured_ms: float
    saved_ms: float
    proxy_loss: float
    delta_loss: float
    map50_95: float | None = None


@dataclass
class GroupSensitivity:
    """A group (named by its root layer inside ``Detector.prunable()``) and its measured points."""

    name: str
    channels: int
    points: list[Point] = field(default_factory=list)

    def cost_per_ms(self, ratio: float) -> float:
        """Accuracy lost (proxy loss, >= 0) per ms saved when ``ratio`` of the channels go: the
        first point's below it, interpolated between points, the last point's beyond it."""
        pts = sorted(self.points, key=lambda p: p.ratio)
        ratio = max(ratio, pts[0].ratio)  # below the first point, cost and saving both run from 0: its ratio
        ratios = [0.0] + [p.ratio for p in pts]
        cost = float(np.interp(ratio, ratios, [0.0] + [max(p.delta_loss, 0.0) for p in pts]))
        saved = float(np.interp(ratio, ratios, [0.0] + [p.saved_ms for p in pts]))
        return cost / max(saved, MIN_SAVED_MS)


@dataclass
class Analysis:
    """``analysis.json``: every group's points, the baseline and how they were measured."""

    model: str
    target: str
    runtime: str
    precision: str
    imgsz: int
    round_to: int
    importance: str
    ratios: list[float]
    baseline: dict[str, Any]
    groups: list[GroupSensitivity]
    seconds: float = 0.0
    agreement: dict[str, Any] | None = None  # proxy loss against mAP50-95, when mAP was measured
    version: int = ANALYSIS_VERSION

    # --- what the search reads ------------------------------------------------------------
    def score(self, group: str, kept: int) -> float | None:
        """``GroupCosts.score``: the group's cost per ms saved at ``kept`` channels; None when the
        group was not analysed."""
        g = self._by_name().get(group)
        if g is None:
            return None
        return g.cost_per_ms(1 - kept / g.channels)

    def _by_name(self) -> dict[str, GroupSensitivity]:
        if not hasattr(self, "_index"):
            self._index = {g.name: g for g in self.groups}
        return self._index

    def check_for(self, target: Target, group_names: Sequence[str], path: str | Path) -> None:
        """Refuse an analysis of another target or another model (none of its groups exist)."""
        if (self.runtime, self.precision, self.imgsz) != (target.runtime, target.precision, target.imgsz):
            raise EdgepruneError(
                f"{path}: measured on {self.runtime} {self.precision} at {self.imgsz} px, the search runs "
                f"{target.runtime} {target.precision} at {target.imgsz} px; run `edgeprune analyze` for this target"
            )
        known = set(group_names)
        if not any(g.name in known for g in self.groups):
            raise EdgepruneError(
                f"{path}: none of its groups is in this model (another architecture?); run `edgeprune analyze` on it"
            )

    # --- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # fields only: the name index is not one

    def save(self, path: str | Path) -> Path:
        """Write ``analysis.json`` (atomically: a kill leaves the old file or none)."""
        from edgeprune.files import write_text_atomic

        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Analysis:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise EdgepruneError(f"{path}: no such file; `edgeprune analyze` writes analysis.json") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EdgepruneError(f"{path}: not an analysis.json ({e})") from None
        if not isinstance(raw, dict) or raw.get("version") != ANALYSIS_VERSION:
            raise EdgepruneError(
                f"{path}: `version` {raw.get('version') if isinstance(raw, dict) else None!r} is not "
                f"{ANALYSIS_VERSION}; run `edgeprune analyze` again"
            )
        try:
            groups = [
                GroupSensitivity(g["name"], int(g["channels"]), [Point(**p) for p in g["points"]])
                for g in raw["groups"]
            ]
            return cls(**{**raw, "groups": groups})
        except (KeyError, TypeError, ValueError) as e:
            raise EdgepruneError(
                f"{path}: a field is missing or malformed ({e}); run `edgeprune analyze` again"
            ) from None


def analyze(
    detector: Detector,
    target: Target,
    meter: LatencyMeter,
    data: str | Path,
    *,
    ratios: Sequence[float] = RATIOS,
    importance: str = "taylor",
    with_map: bool = False,
    groups: Sequence[str] | None = None,
    partial: str | Path | None = None,
    say: Callable[[str], None] = print,
) -> Analysis:
    """Prune each group of ``detector`` alone at each of ``ratios`` and measure what it costs and saves.

    Args:
        detector: the model (left untouched).
        target: its runtime, precision, image size and alignment.
        meter: times every candidate against the baseline (the meter's reference).
        data: a dataset for the accuracy proxy, the criterion's gradients and BatchNorm.
        ratios: fractions of each group's channels removed.
        importance: which channels of a group go first.
        with_map: also measure mAP50-95 of every candidate (slower), and how well the proxy agrees.
        groups: only these groups (names from ``prunable_groups``); default all.
        partial: the analysis so far is written here after every group; an interrupted analysis
            with the same model and settings continues from it (the baseline is timed again: it
            is the meter's reference).
        say: where progress lines go.
    """
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise OptionError(
            f"`ratios` must be fractions in (0, 1), got {', '.join(map(str, ratios)) or 'none'}"
        )
    start = time.perf_counter()
    imgsz, round_to = target.imgsz, target.round_to
    found = prunable_groups(detector, round_to)
    if groups is not None:
        unknown = sorted(set(groups) - {n for n, _ in found})
        if unknown:
            raise EdgepruneError(f"no prunable group named {', '.join(unknown)}")
        found = [(n, c) for n, c in found if n in set(groups)]

    def record(done: list[GroupSensitivity]) -> Analysis:
        return Analysis(
            str(detector.source), target.name, target.runtime, target.precision, imgsz, round_to, importance,
            list(ratios), baseline, done, round(time.perf_counter() - start, 1),
        )  # fmt: skip

    baseline_ms = meter.measure(detector.clone(), "baseline")
    earlier = _resumable(partial, detector, target, importance, ratios, with_map)
    if earlier is not None:
        baseline, out = earlier.baseline, list(earlier.groups)
        say(f"resuming after {len(out)} groups ({partial}); baseline timed again: {baseline_ms:.2f} ms")
    else:
        base_loss = accuracy_proxy(detector, data, imgsz, bn_images=PROXY_BN_IMAGES)
        baseline = {**detector.count(imgsz), "measured_ms": baseline_ms, "proxy_loss": base_loss}
        if with_map:
            baseline["map50_95"] = detector.evaluate(data, imgsz=imgsz)["map50_95"]
        out = []
    base_loss = baseline["proxy_loss"]
    say(
        f"baseline: {baseline_ms:.2f} ms, proxy loss {base_loss:.3f}; {len(found)} groups x {len(ratios)} ratios "
        f"to measure on {target.runtime} {target.precision}"
    )
    done = {g.name for g in out}
    for i, (name, channels) in enumerate(found, 1):
        if name in done:
            continue
        g = GroupSensitivity(name, channels)
        for ratio in ratios:
            cand = detector.clone()
            config = PruneConfig(ratio, importance, "global", 0.95, round_to)
            report = prune_detector(cand, config, imgsz=imgsz, data=data, group=name)
            ms = meter.measure(cand, f"{name}-{ratio:g}")
            reference = float(np.median(meter.reference_timings)) if meter.reference_timings else baseline_ms
            loss = accuracy_proxy(cand, data, imgsz, bn_images=PROXY_BN_IMAGES)
            mAP = None
            if with_map:
                cand.recalibrate_batchnorm(data, imgsz=imgsz, images=PROXY_BN_IMAGES)
                mAP = cand.evaluate(data, imgsz=imgsz)["map50_95"]
            kept = report.groups.get(name, channels)
            g.points.append(
                Point(ratio, kept, report.after["macs"], ms, reference - ms, loss, loss - base_loss, mAP)
            )
        out.append(g)
        if partial is not None:
            record(out).save(partial)
        pts = ", ".join(f"{p.ratio:.0%}: {-p.saved_ms:+.3f} ms, {p.delta_loss:+.3f} loss" for p in g.points)
        say(f"  [{i}/{len(found)}] {name} ({channels} ch): {pts}")
    keep = {n for n, _ in found}
    analysis = record([g for g in out if g.name in keep])
    if with_map:
        analysis.agreement = _agreement(analysis)
    return analysis


def _resumable(
    partial: str | Path | None,
    detector: Detector,
    target: Target,
    importance: str,
    ratios: Sequence[float],
    with_map: bool,
) -> Analysis | None:
    """The interrupted analysis at ``partial``, if it was made with the same model and settings."""
    if partial is None or not Path(partial).is_file():
        return None
    try:
        earlier = Analysis.load(partial)
    except EdgepruneError:
        return None  # unreadable (another version): started afresh and overwritten
    same = (
        earlier.model == str(detector.source)
        and (earlier.runtime, earlier.precision, earlier.imgsz, earlier.round_to)
        == (target.runtime, target.precision, target.imgsz, target.round_to)
        and earlier.importance == importance
        and list(earlier.ratios) == list(ratios)
        and ("map50_95" in earlier.baseline) == with_map
    )
    return earlier if same else None


def _agreement(analysis: Analysis) -> dict[str, Any]:
    """How alike the proxy loss and mAP50-95 rank the candidates: Spearman's rho of the loss's rise
    against mAP's fall."""
    from scipy.stats import spearmanr

    pts = [p for g in analysis.groups for p in g.points if p.map50_95 is not None]
    base = analysis.baseline.get("map50_95")
    if len(pts) < 3 or base is None:
        return {"candidates": len(pts), "spearman_rho": None}
    rho = float(spearmanr([p.delta_loss for p in pts], [base - p.map50_95 for p in pts]).statistic)
    # a constant side (an untrained model scores mAP 0 everywhere) ranks nothing
    return {"candidates": len(pts), "spearman_rho": None if np.isnan(rho) else rho}
