"""Search actions: the kinds of candidate the budget search makes from the current model.

An action turns an ``amount`` in [0, ``limit``] into a smaller candidate (0 removes nothing; the
larger the amount, the smaller the model). Each step of the search asks every action it was
given for the amount whose predicted latency meets the step's goal, measures those candidates
and keeps the best (``pruning/search.py``). A new kind of candidate (removing repeats, attention
heads) is one subclass registered in ``SEARCH_ACTIONS``; the step does not change.

``width`` removes channels (``prune_detector``, global allocation); ``depth`` removes whole
repeats of blocks (``Detector.repeats``), the ones whose removal alone raises a quick accuracy
proxy (the loss on a few validation batches) least.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edgeprune.models.base import Detector
from edgeprune.pruning.options import SEARCH_ACTION_NAMES, PruneConfig, SearchConfig
from edgeprune.pruning.pruner import prune_detector
from edgeprune.registry import Registry


@dataclass
class Candidate:
    """A model an action made, with its size at the search's image size."""

    detector: Detector
    action: str
    amount: float
    params: int
    macs: int
    removed: list[str] = field(default_factory=list)  # depth: the repeats removed


class SearchAction(ABC):
    """One kind of candidate. ``limit`` is the largest amount one step may take."""

    name: ClassVar[str]

    def __init__(self, config: SearchConfig, *, round_to: int, imgsz: int, data: str | Path | None):
        self.config, self.round_to, self.imgsz, self.data = config, round_to, imgsz, data

    @property
    @abstractmethod
    def limit(self) -> float:
        """The largest amount of one step."""

    @abstractmethod
    def make(self, current: Detector, amount: float) -> Candidate:
        """A new candidate: ``current`` (left untouched) reduced by ``amount``."""


class Proposals:
    """An action's candidates from one model, made once per amount (amounts rounded to 0.001)."""

    def __init__(self, action: SearchAction, current: Detector):
        self.action, self.current = action, current
        self._made: dict[float, Candidate] = {}

    def at(self, amount: float) -> Candidate:
        amount = round(amount, 3)
        if amount not in self._made:
            self._made[amount] = self.action.make(self.current, amount)
        return self._made[amount]


class WidthAction(SearchAction):
    """Remove channels: ``amount`` of all channels, the least important first across all groups
    (the ``global`` allocation of ``prune_detector``), no layer losing more than the config's
    ``max_layer_ratio``, widths kept multiples of the target's alignment. With the config's
    ``sensitivity`` (an ``analysis.json``), groups are ranked by their measured accuracy lost per
    ms saved instead; channels inside a group still by importance."""

    name = "width"

    def __init__(self, config: SearchConfig, *, round_to: int, imgsz: int, data: str | Path | None):
        super().__init__(config, round_to=round_to, imgsz=imgsz, data=data)
        self.costs = None
        if config.sensitivity is not None:
            from edgeprune.pruning.sensitivity import Analysis

            self.costs = Analysis.load(config.sensitivity)

    @property
    def limit(self) -> float:
        return round(self.config.max_layer_ratio - 0.005, 3)

    def make(self, current: Detector, amount: float) -> Candidate:
        cand = current.clone()
        pc = PruneConfig(
            amount, self.config.importance, "global", self.config.max_layer_ratio, self.round_to,
            native=self.config.native, keep_heads=self.config.keep_heads,
        )  # fmt: skip
        report = prune_detector(cand, pc, imgsz=self.imgsz, data=self.data, costs=self.costs)
        return Candidate(cand, self.name, amount, report.after["params"], report.after["macs"])


PROXY_BATCHES = 2
"""Validation batches (of 16 images) behind the accuracy proxy."""
PROXY_BN_IMAGES = 64
"""Train images that re-estimate BatchNorm statistics before a candidate's proxy is read."""


def accuracy_proxy(detector: Detector, data: str | Path, imgsz: int, *, bn_images: int = 0) -> float:
    """A quick accuracy proxy, lower is better: the model's loss on ``PROXY_BATCHES`` validation
    batches, after re-estimating BatchNorm statistics on ``bn_images`` train images (on a copy;
    0: as the model is)."""
    if bn_images > 0:
        detector = detector.clone()
        detector.recalibrate_batchnorm(data, imgsz=imgsz, images=bn_images)
    return detector.proxy_loss(data, imgsz=imgsz, batches=PROXY_BATCHES)


class DepthAction(SearchAction):
    """Remove whole repeats: ``amount`` of the current model's removable repeats (rounded to whole
    ones), those whose removal alone costs least on the accuracy proxy first.

    The ranking is computed once per model a step starts from: every repeat removed on its own
    from a copy, its ``accuracy_proxy`` against the unchanged model's. A repeat nested in a removed
    one goes with it (a C3k's Bottlenecks).
    """

    name = "depth"

    def __init__(self, config: SearchConfig, *, round_to: int, imgsz: int, data: str | Path | None):
        super().__init__(config, round_to=round_to, imgsz=imgsz, data=data)
        config.check_data(data, actions=(self.name,))  # also when built outside a search of its config
        self._ranked: tuple[Detector, list[Any]] | None = None

    @property
    def limit(self) -> float:
        return 1.0

    def ranking(self, current: Detector) -> list[Any]:
        """``current``'s repeats, the cheapest to remove first (cached for the same model)."""
        if self._ranked is not None and self._ranked[0] is current:
            return self._ranked[1]
        assert self.data is not None
        base = accuracy_proxy(current, self.data, self.imgsz)
        costs = []
        for unit in current.repeats(native=self.config.native):
            trial = current.clone()
            trial.remove_repeats([unit])  # the ranking needs no config: native or not, same weights
            costs.append((accuracy_proxy(trial, self.data, self.imgsz) - base, unit.name, unit))
        ranked = [unit for _, _, unit in sorted(costs, key=lambda c: (c[0], c[1]))]
        self._ranked = (current, ranked)
        return ranked

    def make(self, current: Detector, amount: float) -> Candidate:
        ranked = self.ranking(current)
        chosen = ranked[: round(amount * len(ranked))]
        cand = current.clone()
        if chosen:
            cand.remove_repeats(chosen, native=self.config.native)
        counts = cand.count(self.imgsz)
        return Candidate(cand, self.name, amount, counts["params"], counts["macs"], [u.name for u in chosen])


SEARCH_ACTIONS: Registry[type[SearchAction]] = Registry("search action")
SEARCH_ACTIONS.register("width", WidthAction)
SEARCH_ACTIONS.register("depth", DepthAction)
assert tuple(SEARCH_ACTIONS.names()) == SEARCH_ACTION_NAMES, "options.SEARCH_ACTION_NAMES lists every action"
