"""Dependency-graph channel pruning on top of torch-pruning."""

from edgeprune.pruning.importance import IMPORTANCE
from edgeprune.pruning.pruner import LayerChange, PruneReport, prune_detector

__all__ = ["IMPORTANCE", "LayerChange", "PruneReport", "prune_detector"]
