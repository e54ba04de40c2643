"""Prune whole channels of a ``Detector`` with torch-pruning's dependency graph.

The adapter supplies what is family-specific: block rewrites that make coupled channels
visible to the graph (``Detector.prunable``), the layers whose outputs must stay
(``Detector.ignored_layers``) and a small trace input (channel structure does not depend on
the image size, so tracing small keeps graph building fast).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeprune.errors import EdgepruneError
from edgeprune.models.base import Detector
from edgeprune.pruning.importance import IMPORTANCE


@dataclass(frozen=True)
class LayerChange:
    name: str
    before: int
    after: int


@dataclass
class PruneReport:
    """What a pruning pass did, with params/MACs counted at ``imgsz``."""

    ratio: float
    importance: str
    round_to: int
    imgsz: int
    before: dict[str, int]
    after: dict[str, int]
    seconds: float
    layers: list[LayerChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self, only_changed: bool = True) -> str:
        """Per-layer output channels, before -> after."""
        rows = [lc for lc in self.layers if lc.before != lc.after or not only_changed]
        width = max([len(lc.name) for lc in rows] + [5])
        lines = [f"{'layer':<{width}}  before  after"]
        lines += [f"{lc.name:<{width}}  {lc.before:>6}  {lc.after:>5}" for lc in rows]
        return "\n".join(lines)


def prune_detector(
    detector: Detector,
    *,
    ratio: float,
    importance: str = "l2",
    round_to: int = 1,
    imgsz: int = 640,
    dry_run: bool = False,
) -> PruneReport:
    """Remove ``ratio`` of the channels of every prunable group (uniformly), in place.

    Args:
        detector: the loaded model; its module is changed in place unless ``dry_run``.
        ratio: fraction of channels removed from each group, in [0, 1).
        importance: name of a criterion in ``IMPORTANCE``.
        round_to: channel counts after pruning are multiples of this (the target's alignment).
        imgsz: image size at which params and MACs are counted for the report.
        dry_run: plan on a copy and leave ``detector`` untouched.
    """
    if not 0.0 <= ratio < 1.0:
        raise EdgepruneError(f"--ratio must be in [0, 1), got {ratio}")
    if round_to < 1:
        raise EdgepruneError(f"round_to must be >= 1, got {round_to}")
    criterion = IMPORTANCE.get(importance)
    if dry_run:
        detector = detector.clone()

    before_channels, before = detector.channels(), detector.count(imgsz)
    start = time.perf_counter()
    if ratio > 0:
        _prune_in_place(detector, criterion(), ratio, round_to)
    seconds = time.perf_counter() - start
    after_channels, after = detector.channels(), detector.count(imgsz)
    layers = [LayerChange(n, c, after_channels.get(n, 0)) for n, c in before_channels.items()]
    return PruneReport(ratio, importance, round_to, imgsz, before, after, seconds, layers)


def _prune_in_place(detector: Detector, importance: Any, ratio: float, round_to: int) -> None:
    import torch_pruning as tp

    with detector.prunable() as module:
        was_training = module.training
        grads = {p: p.requires_grad for p in module.parameters()}
        module.eval()  # tracing in train mode would update BatchNorm statistics
        for p in module.parameters():
            p.requires_grad_(True)  # the graph is traced through autograd
        options = detector.graph_options()  # read inside the rewrites: they may name rewritten layers
        try:
            pruner = tp.pruner.MetaPruner(
                module,
                detector.example_input(detector.trace_imgsz()),
                importance=importance,
                pruning_ratio=ratio,
                ignored_layers=detector.ignored_layers(),
                round_to=round_to,
                global_pruning=False,
                **options,
            )
            pruner.step()
        finally:
            for p in module.parameters():
                p.requires_grad_(grads.get(p, True))
            module.train(was_training)
