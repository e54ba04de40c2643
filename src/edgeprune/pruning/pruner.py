"""Prune whole channels of a ``Detector`` with torch-pruning's dependency graph.

Two allocations: ``uniform`` removes the same fraction of every prunable group (torch-pruning's
local pruning); ``global`` ranks the channels of all groups together and removes the least
important ``ratio`` of them, no group losing more than ``max_layer_ratio`` (planned here, see
``_global_plan``, so that the two halves of a split block end with equal widths).

The adapter supplies what is family-specific: block rewrites that make coupled channels
visible to the graph (``Detector.prunable``), the layers whose outputs must stay
(``Detector.ignored_layers``) and a small trace input (channel structure does not depend on
the image size, so tracing small keeps graph building fast).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.models.base import Detector
from edgeprune.pruning.importance import IMPORTANCE
from edgeprune.pruning.options import PruneConfig


@dataclass(frozen=True)
class LayerChange:
    name: str
    before: int
    after: int


@dataclass
class PruneReport:
    """What a pruning pass did with ``config``, params/MACs counted at ``imgsz``."""

    config: PruneConfig
    imgsz: int
    before: dict[str, int]
    after: dict[str, int]
    seconds: float
    layers: list[LayerChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON: the config's fields next to the counts (the keys of ``prune.json``)."""
        out = {**self.config.to_dict(), **asdict(self)}
        del out["config"]
        return out

    def table(self, only_changed: bool = True) -> str:
        """Per-layer output channels, before -> after."""
        rows = [lc for lc in self.layers if lc.before != lc.after or not only_changed]
        width = max([len(lc.name) for lc in rows] + [5])
        lines = [f"{'layer':<{width}}  before  after"]
        lines += [f"{lc.name:<{width}}  {lc.before:>6}  {lc.after:>5}" for lc in rows]
        return "\n".join(lines)


def prune_detector(
    detector: Detector,
    config: PruneConfig,
    *,
    imgsz: int = 640,
    data: str | Path | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Remove channels in place as ``config`` says.

    Args:
        detector: the loaded model; its module is changed in place unless ``dry_run``.
        config: ratio, criterion, allocation, per-layer limit and alignment.
        imgsz: image size at which params and MACs are counted for the report, and at which the
            gradient batches of gradient-based criteria are run.
        data: a dataset (Ultralytics data.yaml) for criteria that need gradients (``taylor``).
        dry_run: plan on a copy and leave ``detector`` untouched.
    """
    config.check_data(data)
    criterion = IMPORTANCE.get(config.importance)
    if dry_run:
        detector = detector.clone()

    before_channels, before = detector.channels(), detector.count(imgsz)
    start = time.perf_counter()
    if config.ratio > 0:
        gradients = None
        if config.needs_gradients:
            gradients = {
                "data": data, "batches": config.grad_batches, "imgsz": imgsz, "batch_size": config.grad_batch_size
            }  # fmt: skip
        _prune_in_place(detector, criterion(), config, gradients)
    seconds = time.perf_counter() - start
    after_channels, after = detector.channels(), detector.count(imgsz)
    layers = [LayerChange(n, c, after_channels.get(n, 0)) for n, c in before_channels.items()]
    return PruneReport(config, imgsz, before, after, seconds, layers)


def _prune_in_place(
    detector: Detector, importance: Any, config: PruneConfig, gradients: dict[str, Any] | None
) -> None:
    import torch_pruning as tp

    ratio, round_to, max_layer_ratio = config.ratio, config.round_to, config.max_layer_ratio

    with detector.prunable() as module:
        was_training = module.training
        grads = {p: p.requires_grad for p in module.parameters()}
        old_grads = {p: p.grad for p in module.parameters()}
        for p in module.parameters():
            p.requires_grad_(True)  # the graph is traced through autograd
        try:
            if gradients is not None:
                for p in module.parameters():
                    p.grad = None
                detector.accumulate_gradients(
                    gradients["data"],
                    batches=gradients["batches"],
                    imgsz=gradients["imgsz"],
                    batch_size=gradients["batch_size"],
                )
            module.eval()  # tracing in train mode would update BatchNorm statistics
            options = detector.graph_options()  # read inside the rewrites: they may name rewritten layers
            pruner = tp.pruner.MetaPruner(
                module,
                detector.example_input(detector.trace_imgsz()),
                importance=importance,
                pruning_ratio=ratio if config.allocation == "uniform" else 0.0,
                max_pruning_ratio=max_layer_ratio,
                ignored_layers=detector.ignored_layers(),
                round_to=round_to,
                global_pruning=False,
                **options,
            )
            if config.allocation == "uniform":
                pruner.step()
            else:
                plan = _global_plan(pruner, ratio, round_to, max_layer_ratio, detector.equal_widths())
                for step in plan:
                    group = pruner.DG.get_pruning_group(step.root, step.handler, step.indices())
                    if pruner.DG.check_pruning_group(group):
                        group.prune()
        finally:
            for p in module.parameters():
                p.requires_grad_(grads.get(p, True))
                g = old_grads.get(p)  # gradients were only for ranking; pruned tensors lose theirs
                p.grad = g if g is not None and g.shape == p.shape else None
            module.train(was_training)


# --- global allocation ---------------------------------------------------------------------------
@dataclass
class _GroupPlan:
    """One pruning group: its root layer, per-channel importance and how many channels it keeps."""

    root: Any
    handler: Any
    importance: Any  # 1-D tensor, one score per channel (per position, with channel groups)
    ch_groups: int  # > 1 when the channels come in repeated groups (ADown's halved inputs)
    layers: set = field(default_factory=set)  # every layer whose output channels the group prunes
    keep: int = 0  # channels kept (all channel groups together)

    @property
    def channels(self) -> int:
        return len(self.importance) * self.ch_groups

    def indices(self) -> list[int]:
        positions = len(self.importance)
        drop = positions - self.keep // self.ch_groups
        lowest = self.importance.argsort()[:drop]
        return sorted(int(i) + g * positions for g in range(self.ch_groups) for i in lowest)


def channel_groups(pruner: Any, group: Any) -> int:
    """In how many repeated groups ``group``'s channels come (1: none): the largest setting that the
    pruner's public ``in_channel_groups`` / ``out_channel_groups`` give the group's layers, each read
    on the side (input or output channels) the group prunes it on. Group convolutions and ADown's
    halved inputs have more than one."""
    counts = [1]
    for dep, _ in group:
        side = (
            pruner.out_channel_groups
            if pruner.DG.is_out_channel_pruning_fn(dep.handler)
            else pruner.in_channel_groups
        )
        if dep.target.module in side:
            counts.append(side[dep.target.module])
    return max(counts)


def _global_plan(
    pruner: Any, ratio: float, round_to: int, max_layer_ratio: float, pairs: list[tuple[Any, Any]]
) -> list[_GroupPlan]:
    """How many channels each group keeps when the least important ``ratio`` of all channels go.

    Importance is computed for every group on the unpruned model (torch-pruning's normalised
    scores, comparable across groups). Each group offers its lowest-ranked channels down to the
    ``max_layer_ratio`` limit; the lowest of all offers are removed until ``ratio`` of all channels
    are gone. Kept counts are then rounded to multiples of ``round_to`` (never below the limit,
    never to zero), and the groups of each pair in ``pairs`` (the two halves of a split block) keep
    the larger of their two counts, each half its own most important channels, so the halves can be
    merged back into the stock block.
    """
    DG = pruner.DG
    plans: list[_GroupPlan] = []
    for group in DG.get_all_groups(
        ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
    ):
        imp = pruner.estimate_importance(group)
        if imp is None:
            continue
        ch_groups = channel_groups(pruner, group)
        scores = imp.view(ch_groups, -1).mean(0) if ch_groups > 1 else imp
        root, handler = group[0].dep.target.module, group[0].dep.handler
        plan = _GroupPlan(root, handler, scores.detach().float().cpu(), ch_groups)
        plan.layers = {dep.target.module for dep, _ in group if DG.is_out_channel_pruning_fn(dep.handler)}
        plan.keep = plan.channels
        plans.append(plan)
    if not plans:
        return []

    # offers: (score, plan index), each group's lowest positions down to its limit
    offers: list[tuple[float, int]] = []
    for i, plan in enumerate(plans):
        positions = len(plan.importance)
        allowed = positions - max(1, math.ceil(positions * (1 - max_layer_ratio)))
        ranked = plan.importance.sort().values[: max(allowed, 0)]
        offers += [(float(score), i) for score in ranked]
    offers.sort(key=lambda o: o[0])
    goal, removed = int(ratio * sum(p.channels for p in plans)), 0
    for _, i in offers:
        if removed >= goal:
            break
        plans[i].keep -= plans[i].ch_groups
        removed += plans[i].ch_groups

    for plan in plans:
        plan.keep = _rounded_keep(plan.keep, plan.channels, plan.ch_groups, round_to, max_layer_ratio)

    owner = {layer: plan for plan in plans for layer in plan.layers}
    changed = True
    while changed:  # pairs may chain through shared groups: repeat until every pair agrees
        changed = False
        for a, b in pairs:
            pa, pb = owner.get(a), owner.get(b)
            if pa is None or pb is None or pa is pb or pa.keep == pb.keep:
                continue
            keep = max(pa.keep, pb.keep)
            for p in (pa, pb):
                if p.keep != keep:
                    p.keep = min(keep, p.channels)
                    changed = True
    return [p for p in plans if p.keep < p.channels]


def _rounded_keep(keep: int, channels: int, ch_groups: int, round_to: int, max_layer_ratio: float) -> int:
    """``keep`` to the nearest multiple of the alignment, at least the ``max_layer_ratio`` limit."""
    step = math.lcm(round_to, ch_groups)
    if channels <= step:
        return channels  # too narrow to round: left whole
    floor = math.ceil(channels * (1 - max_layer_ratio) / step) * step  # the limit, rounded up
    rounded = max(step, floor, round(keep / step) * step)
    return channels if rounded >= channels else rounded
