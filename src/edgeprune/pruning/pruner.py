"""Prune whole channels of a ``Detector`` with torch-pruning's dependency graph.

Two allocations: ``uniform`` removes the same fraction of every prunable group
(``_uniform_plan``); ``global`` ranks the channels of all groups together and removes the least
important ``ratio`` of them, no group losing more than ``max_layer_ratio`` (``_global_plan``).
Both are planned here, not by torch-pruning's own step, so that the two halves of a split block
end with equal widths and an attention's stream loses whole heads (``Detector.width_step``). ``global`` can
rank groups by measured cost instead (``costs``: the accuracy lost per ms saved, from
``edgeprune analyze``), channels inside a group still by the criterion; and one group can be
pruned alone (``group``: what the analysis measures).

The adapter supplies what is family-specific: block rewrites that make coupled channels
visible to the graph (``Detector.prunable``), the layers whose outputs must stay
(``Detector.ignored_layers``) and a small trace input (channel structure does not depend on
the image size, so tracing small keeps graph building fast).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgeprune.errors import EdgepruneError
from edgeprune.models.base import Detector
from edgeprune.pruning.importance import IMPORTANCE
from edgeprune.pruning.options import PruneConfig


class GroupCosts(Protocol):
    """Scores groups by measured cost (``pruning/sensitivity.py``'s ``Analysis``)."""

    def score(self, group: str, kept: int) -> float | None:
        """The cost of ``group`` (a root layer's name inside ``Detector.prunable()``) pruned down to
        ``kept`` channels, lower pruned first; None: not measured (the group is left whole)."""


@dataclass(frozen=True)
class LayerChange:
    name: str
    before: int  # output channels
    after: int
    macs_before: int = 0  # multiply-accumulates at the report's imgsz
    macs_after: int = 0


@dataclass
class PruneReport:
    """What a pruning pass did with ``config``, params/MACs counted at ``imgsz``."""

    config: PruneConfig
    imgsz: int
    before: dict[str, int]
    after: dict[str, int]
    seconds: float
    layers: list[LayerChange] = field(default_factory=list)
    groups: dict[str, int] = field(default_factory=dict)  # global plans: channels kept per group pruned

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON: the config's fields next to the counts (the keys of ``prune.json``)."""
        out = {**self.config.to_dict(), **asdict(self)}
        del out["config"]
        return out

    def add_layer_macs(self, detector: Detector, before_macs: dict[str, int]) -> None:
        """Each layer's MACs before (``before_macs``: ``layer_macs`` of the model before this pass)
        and in ``detector`` now. Only for a report that is written: a search's candidates and the
        sensitivity analysis prune many times and read none of it."""
        before = {lc.name: lc.before for lc in self.layers}
        self.layers = [LayerChange(**c) for c in detector.layer_changes(before, before_macs, self.imgsz)]

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
    group: str | None = None,
    costs: GroupCosts | None = None,
) -> PruneReport:
    """Remove channels in place as ``config`` says.

    Args:
        detector: the loaded model; its module is changed in place unless ``dry_run``.
        config: ratio, criterion, allocation, per-layer limit and alignment.
        imgsz: image size at which params and MACs are counted for the report, and at which the
            gradient batches of gradient-based criteria are run.
        data: a dataset (Ultralytics data.yaml) for criteria that need gradients (``taylor``).
        dry_run: plan on a copy and leave ``detector`` untouched.
        group: prune only this group (its root layer's name, see ``prunable_groups``), ``ratio``
            of its channels (and the group whose width must equal it), the least important first.
        costs: with the ``global`` allocation, offer channels in the order of their group's cost
            at the width they would leave (``GroupCosts``) instead of their importance.
    """
    config.check_data(data)
    if (group is not None or costs is not None) and config.allocation != "global":
        raise EdgepruneError(
            "pruning one group, or by measured costs, plans globally: use allocation 'global'"
        )
    criterion = IMPORTANCE.get(config.importance)
    if dry_run:
        detector = detector.clone()

    before_channels, before = detector.channels(), detector.count(imgsz)
    start = time.perf_counter()
    planned: dict[str, int] = {}
    if config.ratio > 0:
        gradients = None
        if config.needs_gradients:
            gradients = {
                "data": data, "batches": config.grad_batches, "imgsz": imgsz, "batch_size": config.grad_batch_size
            }  # fmt: skip
        step = detector.width_step
        if config.native:
            rebuilt = _native_target(detector, config, imgsz=imgsz, data=data, group=group, costs=costs)
            plan: _Planner = lambda pruner, pairs: _target_plan(pruner, detector, rebuilt)  # noqa: E731
        elif group is not None:
            plan = lambda pruner, pairs: _single_plan(pruner, group, config, pairs, step)  # noqa: E731
        elif config.allocation == "global":
            plan = lambda pruner, pairs: _global_plan(pruner, config, pairs, costs, step)  # noqa: E731
        else:
            plan = lambda pruner, pairs: _uniform_plan(pruner, config, pairs, step)  # noqa: E731
        planned = _prune_in_place(detector, criterion(), config, gradients, plan)
        if config.native:
            detector.commit_native()
        else:
            detector.native = False  # free widths: the config no longer says them
    seconds = time.perf_counter() - start
    after_channels, after = detector.channels(), detector.count(imgsz)
    layers = [LayerChange(n, c, after_channels.get(n, 0)) for n, c in before_channels.items()]
    return PruneReport(config, imgsz, before, after, seconds, layers, planned)


def _prune_in_place(
    detector: Detector,
    importance: Any,
    config: PruneConfig,
    gradients: dict[str, Any] | None,
    plan: _Planner,
) -> dict[str, int]:
    """Prune ``detector`` as ``plan`` says; the channels kept by each group it pruned (by group name)."""
    planned: dict[str, int] = {}
    with detector.prunable(rank_by_gradients=gradients is not None, keep_heads=config.keep_heads) as module:
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
            pruner = _meta_pruner(detector, module, importance, config)
            for step in plan(pruner, detector.equal_widths()):
                group = pruner.DG.get_pruning_group(step.root, step.handler, step.indices())
                if pruner.DG.check_pruning_group(group):
                    group.prune()
                    planned[step.name] = step.keep
        finally:
            for p in module.parameters():
                p.requires_grad_(grads.get(p, True))
                g = old_grads.get(p)  # gradients were only for ranking; pruned tensors lose theirs
                p.grad = g if g is not None and g.shape == p.shape else None
            module.train(was_training)
    return planned


def _meta_pruner(detector: Detector, module: Any, importance: Any, config: PruneConfig) -> Any:
    """torch-pruning's pruner over ``module`` (inside ``detector.prunable()``): its dependency
    graph and importance scores; the plans here say what goes."""
    import torch_pruning as tp

    return tp.pruner.MetaPruner(
        module,
        detector.example_input(detector.trace_imgsz()),
        importance=importance,
        pruning_ratio=0.0,
        max_pruning_ratio=config.max_layer_ratio,
        ignored_layers=detector.ignored_layers(),
        round_to=config.round_to,
        global_pruning=False,
        **detector.graph_options(),  # read inside the rewrites: they may name rewritten layers
    )


def prunable_groups(detector: Detector, round_to: int = 1) -> list[tuple[str, int]]:
    """(name, channels) of every group ``prune_detector(group=...)`` can prune: named by its root
    layer inside ``detector.prunable()``, wider than ``round_to``; of two groups whose widths must
    stay equal (the halves of a split block), only the first (pruning it prunes both)."""
    config = PruneConfig(0.0, "l2", "global", round_to=round_to)
    with detector.prunable() as module:
        was_training = module.training
        module.eval()
        try:
            pruner = _meta_pruner(detector, module, IMPORTANCE.get("l2")(), config)
            plans = _group_plans(pruner, with_importance=False, width_step=detector.width_step)
            partner = _partners(plans, detector.equal_widths())
        finally:
            module.train(was_training)
    out, seen = [], set()
    for plan in plans:
        if plan.name in seen or plan.channels <= round_to:
            continue
        seen.add(plan.name)
        if plan.name in partner:
            seen.add(partner[plan.name])
        out.append((plan.name, plan.channels))
    return out


# --- global allocation ---------------------------------------------------------------------------
_Planner = Callable[[Any, list[tuple[Any, Any]]], list["_GroupPlan"]]
"""(torch-pruning's pruner, pairs of layers of equal width) -> the groups to prune, with their keeps."""


@dataclass
class _GroupPlan:
    """One pruning group: its root layer, per-channel importance and how many channels it keeps."""

    name: str  # the root layer's name in the pruned module
    root: Any
    handler: Any
    importance: Any  # 1-D tensor, one score per channel (per position, with channel groups)
    ch_groups: int  # > 1 when the channels come in repeated groups (ADown's halved inputs)
    layers: set = field(default_factory=set)  # every layer whose output channels the group prunes
    keep: int = 0  # channels kept (all channel groups together)
    step: int = 1  # kept counts are multiples of this (an attention's head width, ``Detector.width_step``)

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


def _group_plans(
    pruner: Any, with_importance: bool = True, width_step: Callable[[Any], int] | None = None
) -> list[_GroupPlan]:
    """Every prunable group, keeping all its channels, with the criterion's scores (torch-pruning's
    normalised scores, comparable across groups) computed on the unpruned model; ``width_step``
    (``Detector.width_step``) gives each group's step from its layers."""
    import torch

    DG = pruner.DG
    names = {m: n for n, m in pruner.model.named_modules()}
    plans: list[_GroupPlan] = []
    for group in DG.get_all_groups(
        ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
    ):
        root, handler = group[0].dep.target.module, group[0].dep.handler
        if with_importance:
            imp = pruner.estimate_importance(group)
            if imp is None:
                continue
        else:
            imp = torch.zeros(DG.get_out_channels(root))
        ch_groups = channel_groups(pruner, group)
        scores = imp.view(ch_groups, -1).mean(0) if ch_groups > 1 else imp
        plan = _GroupPlan(names.get(root, str(root)), root, handler, scores.detach().float().cpu(), ch_groups)
        plan.layers = {dep.target.module for dep, _ in group if DG.is_out_channel_pruning_fn(dep.handler)}
        plan.keep = plan.channels
        if width_step is not None:
            plan.step = math.lcm(1, *(width_step(layer) for layer in plan.layers))
        plans.append(plan)
    return plans


def _partners(plans: list[_GroupPlan], pairs: list[tuple[Any, Any]]) -> dict[str, str]:
    """Group name -> the group whose width must equal it."""
    owner = {layer: plan for plan in plans for layer in plan.layers}
    out: dict[str, str] = {}
    for a, b in pairs:
        pa, pb = owner.get(a), owner.get(b)
        if pa is not None and pb is not None and pa is not pb:
            out[pa.name], out[pb.name] = pb.name, pa.name
    return out


def _equalize_pairs(
    plans: list[_GroupPlan], pairs: list[tuple[Any, Any]], *, larger: bool = True, round_to: int = 1
) -> None:
    """The groups of each pair (the two halves of a split block) keep the larger (or smaller) of
    their two counts, each half its own most important channels, so the halves can be merged back
    into the stock block."""
    owner = {layer: plan for plan in plans for layer in plan.layers}
    changed = True
    while changed:  # pairs may chain through shared groups: repeat until every pair agrees
        changed = False
        for a, b in pairs:
            pa, pb = owner.get(a), owner.get(b)
            if pa is None or pb is None or pa is pb or pa.keep == pb.keep:
                continue
            keep = max(pa.keep, pb.keep) if larger else min(pa.keep, pb.keep)
            # a half carrying attention keeps whole heads: both halves move to a common step,
            # up for the larger count, down for the smaller, so repeated passes cannot cycle
            step = math.lcm(round_to, pa.ch_groups, pb.ch_groups, pa.step, pb.step)
            rounded = math.ceil(keep / step) if larger else max(1, keep // step)
            keep = min(rounded * step, pa.channels, pb.channels)
            for p in (pa, pb):
                if p.keep != keep:
                    p.keep = keep
                    changed = True


def _uniform_plan(
    pruner: Any, config: PruneConfig, pairs: list[tuple[Any, Any]], width_step: Callable[[Any], int]
) -> list[_GroupPlan]:
    """Every group loses ``config.ratio`` of its channels (rounded as ``_rounded_keep`` says),
    its least important first."""
    plans = _group_plans(pruner, width_step=width_step)
    for plan in plans:
        plan.keep = _rounded_keep(
            round(plan.channels * (1 - config.ratio)), plan.channels, plan.ch_groups, config.round_to,
            config.max_layer_ratio, plan.step,
        )  # fmt: skip
    _equalize_pairs(plans, pairs, round_to=config.round_to)
    return [p for p in plans if p.keep < p.channels]


def _single_plan(
    pruner: Any,
    name: str,
    config: PruneConfig,
    pairs: list[tuple[Any, Any]],
    width_step: Callable[[Any], int],
) -> list[_GroupPlan]:
    """Only group ``name`` (and its partner) loses ``config.ratio`` of its channels."""
    plans = _group_plans(pruner, width_step=width_step)
    chosen = [p for p in plans if p.name == name]
    if not chosen:
        raise EdgepruneError(f"no prunable group named {name!r}; see prunable_groups()")
    plan = chosen[0]
    plan.keep = _rounded_keep(
        round(plan.channels * (1 - config.ratio)),
        plan.channels,
        plan.ch_groups,
        config.round_to,
        0.999,
        plan.step,
    )
    _equalize_pairs(plans, pairs, larger=False, round_to=config.round_to)
    return [p for p in plans if p.keep < p.channels]


def _global_plan(
    pruner: Any,
    config: PruneConfig,
    pairs: list[tuple[Any, Any]],
    costs: GroupCosts | None = None,
    width_step: Callable[[Any], int] | None = None,
) -> list[_GroupPlan]:
    """How many channels each group keeps when the least important ``ratio`` of all channels go.

    Each group offers its lowest-ranked channels down to the ``max_layer_ratio`` limit, each offer
    scored by the channel's importance, or with ``costs`` by the group's measured cost at the
    width that removing it leaves; the lowest of all offers are removed until ``ratio`` of all
    channels are gone. Kept counts are then rounded to multiples of ``round_to`` (never below the
    limit, never to zero), and the groups of each pair in ``pairs`` keep the larger of their two
    counts (``_equalize_pairs``).
    """
    ratio, round_to, max_layer_ratio = config.ratio, config.round_to, config.max_layer_ratio
    plans = _group_plans(pruner, width_step=width_step)
    if not plans:
        return []

    # offers: (score, plan index), each group's lowest positions down to its limit
    offers: list[tuple[float, int]] = []
    for i, plan in enumerate(plans):
        positions = len(plan.importance)
        allowed = positions - max(1, math.ceil(positions * (1 - max_layer_ratio)))
        if costs is None:
            offers += [(float(score), i) for score in plan.importance.sort().values[: max(allowed, 0)]]
            continue
        for j in range(max(allowed, 0)):
            score = costs.score(plan.name, plan.channels - (j + 1) * plan.ch_groups)
            if score is None:
                break
            offers.append((score, i))
    offers.sort(key=lambda o: o[0])
    goal, removed = int(ratio * sum(p.channels for p in plans)), 0
    for _, i in offers:
        if removed >= goal:
            break
        plans[i].keep -= plans[i].ch_groups
        removed += plans[i].ch_groups

    for plan in plans:
        plan.keep = _rounded_keep(
            plan.keep, plan.channels, plan.ch_groups, round_to, max_layer_ratio, plan.step
        )
    _equalize_pairs(plans, pairs, round_to=round_to)
    return [p for p in plans if p.keep < p.channels]


# --- native widths ---------------------------------------------------------------------------
def _native_target(
    detector: Detector,
    config: PruneConfig,
    *,
    imgsz: int,
    data: str | Path | None,
    group: str | None,
    costs: GroupCosts | None,
) -> Any:
    """The model native pruning prunes to: what ``config`` would prune freely (on a copy),
    rounded to widths the model's config can say, built by the model's own library
    (``Detector.native_plan``)."""
    detector.require_native_config()  # before the free pass, which may take gradient batches
    free = detector.clone()
    prune_detector(free, config.with_changes(native=False), imgsz=imgsz, data=data, group=group, costs=costs)
    return detector.native_plan(free, align=config.round_to)


def _target_plan(pruner: Any, detector: Detector, rebuilt: Any) -> list[_GroupPlan]:
    """Every group pruned to the width ``rebuilt`` gives its layers (``Detector.native_widths``),
    each group's most important channels kept. Only layers the group covers whole count (a group
    may hold a slice of a layer's channels, e.g. one input of a concatenation summed with a wider
    layer): the shapes of the rest are checked after pruning (``Detector.commit_native``)."""
    plans, target = [], detector.native_widths(rebuilt)
    for plan in _group_plans(pruner):
        whole = [layer for layer in plan.layers if _out_width(pruner, layer) == plan.channels]
        widths = {target[layer] for layer in whole if layer in target}
        if len(widths) > 1:
            raise EdgepruneError(
                f"native pruning: group {plan.name} couples layers the model's config builds to "
                f"different widths ({sorted(widths)}); prune this model without --native"
            )
        if not widths:
            continue
        keep = widths.pop()
        if keep > plan.channels:
            raise EdgepruneError(
                f"native pruning: group {plan.name} has {plan.channels} channels but its config "
                f"builds {keep}; was the model pruned without --native before?"
            )
        if keep < plan.channels:
            plan.keep = keep
            plans.append(plan)
    return plans


def _out_width(pruner: Any, layer: Any) -> int | None:
    try:
        return int(pruner.DG.get_out_channels(layer))
    except (TypeError, ValueError, AttributeError):
        return None


def _rounded_keep(
    keep: int, channels: int, ch_groups: int, round_to: int, max_layer_ratio: float, step: int = 1
) -> int:
    """``keep`` to the nearest multiple of the alignment (``round_to``, the channel groups and the
    group's own ``step``), at least the ``max_layer_ratio`` limit."""
    step = math.lcm(round_to, ch_groups, step)
    if channels <= step:
        return channels  # too narrow to round: left whole
    floor = math.ceil(channels * (1 - max_layer_ratio) / step) * step  # the limit, rounded up
    rounded = max(step, floor, round(keep / step) * step)
    return channels if rounded >= channels else rounded
