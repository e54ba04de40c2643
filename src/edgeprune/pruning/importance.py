"""Importance criteria by name. Each entry builds a fresh torch-pruning importance object.

Criteria in ``NEEDS_GRADIENTS`` read ``.grad`` of the weights: the pruner first runs a few
batches of real data through the model's own loss (``Detector.accumulate_gradients``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeprune.registry import Registry

IMPORTANCE: Registry[Callable[[], Any]] = Registry("importance criterion")

NEEDS_GRADIENTS: frozenset[str] = frozenset({"taylor"})

# How the ratio is spread: the same fraction of every group, or ranked across all groups.
ALLOCATIONS: tuple[str, ...] = ("uniform", "global")


def _tp() -> Any:
    import torch_pruning as tp

    return tp


IMPORTANCE.register("l1", lambda: _tp().importance.MagnitudeImportance(p=1))
IMPORTANCE.register("l2", lambda: _tp().importance.MagnitudeImportance(p=2))
IMPORTANCE.register("bn", lambda: _tp().importance.BNScaleImportance())
# Taylor scores are not normalized per group: |w * dL/dw| estimates the loss a channel's removal
# costs, in the same units in every layer, which is what ranking across groups needs. torch-pruning's
# default divides each group by its mean, making every group look alike: on the hard preset one-shot
# global pruning of a YOLOv8s to about 0.45x its MACs kept mAP50-95 0.344 unnormalized and 0.156
# with the mean (BatchNorm re-estimated, no fine-tuning; benchmarks/taylor_normalization.py).
# Magnitudes are normalized: a weight's scale says nothing across layers.
IMPORTANCE.register("taylor", lambda: _tp().importance.GroupTaylorImportance(normalizer=None))
IMPORTANCE.register("lamp", lambda: _tp().importance.LAMPImportance(p=2))
IMPORTANCE.register("random", lambda: _tp().importance.RandomImportance())
