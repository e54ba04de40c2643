"""Dependency-graph channel pruning on top of torch-pruning.

Criteria and allocations are importable without torch (the CLI lists them in its help); the
pruner itself is imported on first use.
"""

from typing import Any

from edgeprune.pruning.importance import ALLOCATIONS, IMPORTANCE, NEEDS_GRADIENTS
from edgeprune.pruning.options import PruneConfig

__all__ = [
    "ALLOCATIONS", "IMPORTANCE", "NEEDS_GRADIENTS", "LayerChange", "PruneConfig", "PruneReport", "prune_detector",
]  # fmt: skip

_LAZY = {"LayerChange", "PruneReport", "prune_detector"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from edgeprune.pruning import pruner

        return getattr(pruner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
