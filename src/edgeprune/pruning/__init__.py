"""Dependency-graph channel pruning on top of torch-pruning.

Criteria and allocations are importable without torch (the CLI lists them in its help); the
pruner itself is imported on first use.
"""

from typing import Any

from edgeprune.pruning.importance import ALLOCATIONS, IMPORTANCE, NEEDS_GRADIENTS

__all__ = ["ALLOCATIONS", "IMPORTANCE", "NEEDS_GRADIENTS", "LayerChange", "PruneReport", "prune_detector"]

_LAZY = {"LayerChange", "PruneReport", "prune_detector"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from edgeprune.pruning import pruner

        return getattr(pruner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
