"""``PruneConfig``: every choice of a pruning pass in one frozen object.

The CLI, the Python API, recipes, the pipeline and the latency-budget search all build one of
these and hand it to ``prune_detector``; ``check`` rejects what cannot be honoured before any
work is done. Importable without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from edgeprune.errors import EdgepruneError
from edgeprune.pruning.importance import ALLOCATIONS, IMPORTANCE, NEEDS_GRADIENTS


@dataclass(frozen=True)
class PruneConfig:
    """How to prune.

    Attributes:
        ratio: fraction of channels removed, in [0, 1): from each group (``uniform``) or in total,
            the least important first across all groups (``global``).
        importance: name of a criterion in ``IMPORTANCE`` (l1, l2, bn, taylor, lamp, random).
        allocation: ``uniform`` or ``global``.
        max_layer_ratio: no group loses more than this fraction of its channels (before rounding).
        round_to: channel counts after pruning are multiples of this (the target's alignment).
        grad_batches, grad_batch_size: how much of the train split gradient-based criteria see.
    """

    ratio: float
    importance: str = "l2"
    allocation: str = "uniform"
    max_layer_ratio: float = 0.8
    round_to: int = 1
    grad_batches: int = 4
    grad_batch_size: int = 8

    @property
    def needs_gradients(self) -> bool:
        return self.importance in NEEDS_GRADIENTS

    def with_changes(self, **changes: Any) -> PruneConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for progress output, e.g. ``40% of every group (l2, channels rounded to 8)``."""
        scope = "of all channels, ranked globally" if self.allocation == "global" else "of every group"
        return f"{self.ratio:.0%} {scope} ({self.importance}, channels rounded to {self.round_to})"

    def check(self, data: str | Path | None = None) -> None:
        """Raise ``EdgepruneError`` for a configuration ``prune_detector`` cannot honour with ``data``."""
        if not 0.0 <= self.ratio < 1.0:
            raise EdgepruneError(f"--ratio must be in [0, 1), got {self.ratio}")
        if self.round_to < 1:
            raise EdgepruneError(f"round_to must be >= 1, got {self.round_to}")
        if self.allocation not in ALLOCATIONS:
            raise EdgepruneError(f"unknown allocation {self.allocation!r}; known: {', '.join(ALLOCATIONS)}")
        if not 0.0 < self.max_layer_ratio < 1.0:
            raise EdgepruneError(f"--max-layer-ratio must be in (0, 1), got {self.max_layer_ratio}")
        if self.allocation == "uniform" and self.ratio > self.max_layer_ratio:
            raise EdgepruneError(
                f"uniform pruning removes {self.ratio:.0%} of every layer, above --max-layer-ratio "
                f"{self.max_layer_ratio:g}; raise --max-layer-ratio or lower --ratio"
            )
        if self.grad_batches < 1 or self.grad_batch_size < 1:
            raise EdgepruneError("grad_batches and grad_batch_size must be >= 1")
        IMPORTANCE.get(self.importance)  # unknown names: the error lists the known ones
        if self.needs_gradients and data is None:
            raise EdgepruneError(
                f"criterion {self.importance!r} needs a model family with a training loss and --data "
                "(a few batches of real data give the gradients)"
            )
