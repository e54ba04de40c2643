"""torchvision models: classifiers (resnet, mobilenet, efficientnet, regnet, ...) and detectors
(SSD/SSDLite, RetinaNet, FCOS, Faster/Mask/Keypoint R-CNN), built without downloading weights.

Sources: ``"torchvision:resnet18"`` (built with ``weights=None``), a torchvision ``nn.Module``,
or a checkpoint edgeprune saved from one. What must keep its channels, per architecture:

* classifiers: the final ``Linear`` (its outputs are the classes);
* single-stage detectors: the last conv of every classification/regression branch; where one
  head is shared across pyramid levels (RetinaNet, FCOS) the head and the FPN outputs stay whole,
  because the same weights see every level;
* two-stage detectors: the RPN head (shared across levels), the FPN outputs and the ROI
  predictors (class scores, boxes, masks, keypoints).
"""

from __future__ import annotations

import pickletools
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune import _optional
from edgeprune.errors import EdgepruneError
from edgeprune.models.base import ModelAdapter
from edgeprune.models.safe_load import ZIP_ERRORS, safe_torch_load
from edgeprune.models.torch_module import TorchModuleDetector

PREFIX = "torchvision:"


def pickled_modules(path: str | Path) -> set[str]:
    """Top-level packages a ``torch.save`` checkpoint refers to, read without unpickling anything."""
    modules: set[str] = set()
    try:
        with zipfile.ZipFile(path) as archive:
            info = next((i for i in archive.infolist() if i.filename.endswith("data.pkl")), None)
            if info is None or info.compress_type != zipfile.ZIP_STORED or info.file_size > 2**28:
                return modules  # torch.save stores it uncompressed: anything else is the loader's to refuse
            for opcode, arg, _ in pickletools.genops(archive.read(info)):
                if opcode.name == "GLOBAL" and isinstance(arg, str):
                    modules.add(arg.split(" ")[0].split(".")[0])
    except (*ZIP_ERRORS, zlib.error, RuntimeError):
        pass  # a damaged file: safe_torch_load says so
    return modules


class TorchvisionDetector(TorchModuleDetector):
    family = "torchvision"

    @property
    def is_detector(self) -> bool:
        return type(self.module).__module__.startswith("torchvision.models.detection")

    def example_input(self, imgsz: int, batch: int = 1) -> Any:
        """Detectors take a list of CHW images (as the positional argument); classifiers a batch."""
        if not self.is_detector:
            return super().example_input(imgsz, batch)
        p = next(self.module.parameters())
        return ([torch.rand(3, imgsz, imgsz, dtype=p.dtype, device=p.device) for _ in range(batch)],)

    def ignored_layers(self) -> list[nn.Module]:
        if self._ignored:
            return self._ignored
        m = self.module
        if not self.is_detector:
            return super().ignored_layers()
        ignored: list[nn.Module] = []
        if hasattr(m, "roi_heads"):  # two-stage
            heads = m.roi_heads
            for attr in ("box_predictor", "mask_predictor", "keypoint_predictor"):
                if getattr(heads, attr, None) is not None:
                    ignored.append(getattr(heads, attr))
            ignored.append(m.rpn.head)
        elif hasattr(m, "head"):
            head = m.head
            shared = not any(hasattr(branch, "module_list") for branch in head.children())
            if shared:  # RetinaNet / FCOS: one head applied to every pyramid level
                ignored.append(head)
            else:  # SSD / SSDLite: one branch per level
                for branch in head.children():
                    for seq in branch.module_list:
                        ignored.append(seq[-1] if isinstance(seq, nn.Sequential) else seq)
        fpn = getattr(getattr(m, "backbone", None), "fpn", None)
        if fpn is not None:
            ignored.append(fpn.layer_blocks)
            if getattr(fpn, "extra_blocks", None) is not None:
                ignored.append(fpn.extra_blocks)
        return ignored

    def save(self, path: Path, metadata: dict[str, Any] | None = None) -> Path:
        return super().save(path, {"family": self.family, **(metadata or {})})


class TorchvisionAdapter(ModelAdapter):
    name = "torchvision"

    @classmethod
    def accepts(cls, source: Any) -> bool:
        if isinstance(source, nn.Module):
            return type(source).__module__.startswith("torchvision.")
        if isinstance(source, str) and source.startswith(PREFIX):
            return True
        if isinstance(source, (str, Path)) and str(source).endswith(".pt") and Path(source).is_file():
            modules = pickled_modules(source)
            return "torchvision" in modules and "ultralytics" not in modules
        return False

    @classmethod
    def load(
        cls, source: Any, *, nc: int | None = None, trust_checkpoint: bool = False, **_: Any
    ) -> TorchvisionDetector:
        """Build ``torchvision:NAME`` without weights (``nc`` sets the class count), or wrap/load a model."""
        if isinstance(source, nn.Module):
            return TorchvisionDetector(source, source=type(source).__name__)
        text = str(source)
        if text.startswith(PREFIX):
            tv = _optional.require("torchvision", "torchvision", "torchvision models")
            name = text[len(PREFIX) :]
            if name not in tv.models.list_models():
                raise EdgepruneError(
                    f"torchvision has no model {name!r}; see torchvision.models.list_models()"
                )
            kwargs: dict[str, Any] = {"weights": None}
            if name in tv.models.list_models(module=tv.models.detection):
                kwargs["weights_backbone"] = None  # the default backbone weights would be downloaded
            if nc is not None:
                kwargs["num_classes"] = nc
            return TorchvisionDetector(tv.models.get_model(name, **kwargs).eval(), source=text)
        ckpt = safe_torch_load(text, trust=trust_checkpoint)
        module = ckpt["model"] if isinstance(ckpt, dict) else ckpt
        if not isinstance(module, nn.Module):
            raise EdgepruneError(f"{text} does not hold a model (found {type(module).__name__})")
        return TorchvisionDetector(module, source=text)
