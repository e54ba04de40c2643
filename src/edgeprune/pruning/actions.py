"""Search actions: the kinds of candidate the budget search makes from the current model.

An action turns an ``amount`` in [0, ``limit``] into a smaller candidate (0 removes nothing; the
larger the amount, the smaller the model). Each step of the search asks every action it was
given for the amount whose predicted latency meets the step's goal, measures those candidates
and keeps the best (``pruning/search.py``). A new kind of candidate (removing repeats, attention
heads) is one subclass registered in ``SEARCH_ACTIONS``; the step does not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgeprune.models.base import Detector
from edgeprune.pruning.options import PruneConfig, SearchConfig
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
    ``max_layer_ratio``, widths kept multiples of the target's alignment."""

    name = "width"

    @property
    def limit(self) -> float:
        return round(self.config.max_layer_ratio - 0.005, 3)

    def make(self, current: Detector, amount: float) -> Candidate:
        cand = current.clone()
        pc = PruneConfig(amount, self.config.importance, "global", self.config.max_layer_ratio, self.round_to)
        report = prune_detector(cand, pc, imgsz=self.imgsz, data=self.data)
        return Candidate(cand, self.name, amount, report.after["params"], report.after["macs"])


SEARCH_ACTIONS: Registry[type[SearchAction]] = Registry("search action")
SEARCH_ACTIONS.register("width", WidthAction)
