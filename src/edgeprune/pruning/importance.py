"""Importance criteria by name. Each entry builds a fresh torch-pruning importance object."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeprune.registry import Registry

IMPORTANCE: Registry[Callable[[], Any]] = Registry("importance criterion")


def _tp() -> Any:
    import torch_pruning as tp

    return tp


IMPORTANCE.register("l1", lambda: _tp().importance.MagnitudeImportance(p=1))
IMPORTANCE.register("l2", lambda: _tp().importance.MagnitudeImportance(p=2))
IMPORTANCE.register("bn", lambda: _tp().importance.BNScaleImportance())
IMPORTANCE.register("lamp", lambda: _tp().importance.LAMPImportance(p=2))
IMPORTANCE.register("random", lambda: _tp().importance.RandomImportance())
