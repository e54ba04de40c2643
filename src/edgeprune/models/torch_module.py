"""Any ``torch.nn.Module``: pruned through the same API, saved as a whole pickled module."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.models.base import Detector, ModelAdapter


class TorchModuleDetector(Detector):
    """A plain module. Its output layer (the last Linear, or the last Conv2d if it has none) is kept."""

    family = "torch"

    def __init__(self, module: nn.Module, source: str, ignored: list[nn.Module] | None = None):
        super().__init__(module, source)
        self._ignored = list(ignored or [])

    def inference_module(self) -> nn.Module:
        return self.module

    def ignored_layers(self) -> list[nn.Module]:
        if self._ignored:
            return self._ignored
        linears = [m for m in self.module.modules() if isinstance(m, nn.Linear)]
        convs = [m for m in self.module.modules() if isinstance(m, nn.Conv2d)]
        return (linears or convs)[-1:]

    def save(self, path: Path, metadata: dict[str, Any] | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from edgeprune.files import atomic_path

        with atomic_path(path) as tmp:
            torch.save({"model": copy.deepcopy(self.module).cpu().eval(), "edgeprune": metadata or {}}, tmp)
        return path


class TorchModuleAdapter(ModelAdapter):
    name = "torch"

    @classmethod
    def accepts(cls, source: Any) -> bool:
        return isinstance(source, nn.Module)

    @classmethod
    def load(
        cls, source: Any, *, ignored_layers: list[nn.Module] | None = None, **_: Any
    ) -> TorchModuleDetector:
        return TorchModuleDetector(source, source=type(source).__name__, ignored=ignored_layers)
