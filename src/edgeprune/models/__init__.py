"""Model adapters, one module per family, registered in ``MODELS`` and tried in order."""

from __future__ import annotations

from typing import Any

from edgeprune.errors import EdgepruneError
from edgeprune.models.base import Detector, ModelAdapter
from edgeprune.registry import Registry

MODELS: Registry[type[ModelAdapter]] = Registry("model adapter")
# Tried in registration order: specific families first, the plain nn.Module adapter last.
# torchvision before Ultralytics: it claims only .pt files whose pickle names torchvision classes.
MODELS.register("torchvision", "edgeprune.models.torchvision:TorchvisionAdapter")
MODELS.register("ultralytics", "edgeprune.models.ultralytics:UltralyticsAdapter")
MODELS.register("torch", "edgeprune.models.torch_module:TorchModuleAdapter")


def load_model(source: Any, **kwargs: Any) -> Detector:
    """Load ``source`` (checkpoint path, model config name or ``nn.Module``) with the first adapter that accepts it.

    ``kwargs`` go to the adapter's ``load``, e.g. ``nc`` and ``trust_checkpoint``: checkpoints are
    unpickled through an allow-list (``edgeprune.models.safe_load``) unless ``trust_checkpoint=True``.
    """
    if isinstance(source, Detector):
        return source
    for name in MODELS.names():
        adapter = MODELS.get(name)
        if adapter.accepts(source):
            return adapter.load(source, **kwargs)
    raise EdgepruneError(
        f"no model adapter accepts {source!r}: pass an Ultralytics checkpoint (.pt), a model config "
        f"(e.g. yolov8n.yaml) or a torch.nn.Module"
    )


__all__ = ["MODELS", "Detector", "ModelAdapter", "load_model"]
