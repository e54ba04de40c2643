"""Ultralytics YOLO models: load from a checkpoint or a model config, prune, save, train, validate.

Everything here imports Ultralytics lazily through ``edgeprune._optional.ultralytics()``, which
switches off Ultralytics' network access (connectivity check, events, auto-install) first.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune import _optional
from edgeprune.errors import EdgepruneError
from edgeprune.models.base import Detector, ModelAdapter

_CONFIG_SUFFIXES = (".yaml", ".yml")


class FirstOutput(nn.Module):
    """Return only the decoded predictions of a YOLO model (eval mode returns ``(y, features)``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


class C2fSplit(nn.Module):
    """C2f/C3k2 with its first 1x1 conv split into two convs, one per half of the ``chunk(2)``.

    The stock block computes ``cv1(x).chunk(2, 1)``; a dependency graph cannot keep the two halves
    consistent when channels are removed from one conv and then split. Two convs carry the same
    weights, so the outputs are identical, and each half becomes its own pruning group. After
    pruning ``merge_into`` writes the halves back into the original block (see ``UltralyticsDetector``).
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        from ultralytics.nn.modules import Conv

        c, conv = block.c, block.cv1
        self.cv0 = Conv(conv.conv.in_channels, c, 1, 1)
        self.cv1 = Conv(conv.conv.in_channels, c, 1, 1)
        for half, sl in ((self.cv0, slice(0, c)), (self.cv1, slice(c, 2 * c))):
            _copy_conv(conv, half, sl)
        self.m = block.m
        self.cv2 = block.cv2
        for attr in ("f", "i", "type", "np"):  # Ultralytics' routing attributes (from-layer, index, ...)
            if hasattr(block, attr):
                setattr(self, attr, getattr(block, attr))
        self.train(block.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv0(x), self.cv1(x)]
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))

    def merge_into(self, block: nn.Module) -> nn.Module:
        """Write the (pruned) halves back into ``block`` so that it stays a stock Ultralytics module."""
        from ultralytics.nn.modules import Conv

        c0, c1 = self.cv0.conv.out_channels, self.cv1.conv.out_channels
        if c0 != c1:
            raise EdgepruneError(
                f"C2f halves were pruned to different widths ({c0} vs {c1}); the stock block needs equal halves"
            )
        merged = Conv(self.cv0.conv.in_channels, c0 + c1, 1, 1)
        merged.conv.weight.data = torch.cat([self.cv0.conv.weight.data, self.cv1.conv.weight.data])
        bn, b0, b1 = merged.bn, self.cv0.bn, self.cv1.bn
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, name).data = torch.cat([getattr(b0, name).data, getattr(b1, name).data])
        bn.eps, bn.momentum, bn.num_features = b0.eps, b0.momentum, c0 + c1
        merged.train(self.training)
        block.cv1, block.m, block.cv2, block.c = merged, self.m, self.cv2, c0
        return block


def _copy_conv(src: nn.Module, dst: nn.Module, rows: slice) -> None:
    """Copy output channels ``rows`` of an Ultralytics Conv (conv + BN) into ``dst``."""
    dst.conv.weight.data.copy_(src.conv.weight.data[rows])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst.bn, name).data.copy_(getattr(src.bn, name).data[rows])
    dst.bn.eps, dst.bn.momentum = src.bn.eps, src.bn.momentum


def _is_chunked_c2f(module: nn.Module) -> bool:
    from ultralytics.nn.modules.block import C2f

    return isinstance(module, C2f) and type(module).forward is C2f.forward


class UltralyticsDetector(Detector):
    family = "ultralytics"

    @property
    def head(self) -> nn.Module:
        return self.module.model[-1]

    @property
    def nc(self) -> int:
        return int(getattr(self.head, "nc", 0))

    def trace_imgsz(self) -> int:
        return max(64, 2 * int(self.module.stride.max()))

    def inference_module(self) -> nn.Module:
        return FirstOutput(self.module)

    def ignored_layers(self) -> list[nn.Module]:
        """The last conv of every branch of the head (its channels are box/class outputs) and the DFL."""
        head, ignored = self.head, []
        for child in head.children():
            if isinstance(child, nn.ModuleList):
                ignored.extend(branch[-1] for branch in child if isinstance(branch, nn.Sequential))
        if hasattr(head, "dfl"):
            ignored.append(head.dfl)
        return ignored

    @contextmanager
    def prunable(self) -> Iterator[nn.Module]:
        originals: list[tuple[nn.Module, str, nn.Module, C2fSplit]] = []
        for parent in list(self.module.modules()):
            for name, child in parent.named_children():
                if _is_chunked_c2f(child):
                    split = C2fSplit(child)
                    setattr(parent, name, split)
                    originals.append((parent, name, child, split))
        try:
            yield self.module
        finally:
            for parent, name, block, split in originals:
                setattr(parent, name, split.merge_into(block))

    # --- persistence --------------------------------------------------------------------
    def save(self, path: Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write an Ultralytics checkpoint: ``ultralytics.YOLO(path)`` loads it, pruned widths included."""
        ul = _optional.ultralytics()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        model = copy.deepcopy(self.module).cpu().float().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        ckpt = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "version": ul.__version__,
            "model": model,
            "train_args": dict(getattr(self.module, "args", {}) or {}),
            "edgeprune": metadata or {},
        }
        torch.save(ckpt, path)
        return path

    # --- training and validation -------------------------------------------------------
    def _check_data(self, data: str | Path) -> dict:
        _optional.ultralytics()
        from ultralytics.data.utils import check_det_dataset

        path = Path(data)
        if not path.is_file():
            raise EdgepruneError(f"dataset file not found: {data} (edgeprune never downloads datasets)")
        info = check_det_dataset(str(path), autodownload=False)
        if int(info["nc"]) != self.nc:
            raise EdgepruneError(
                f"the model predicts {self.nc} classes but {data} has {info['nc']}: "
                f"train the model on this data first, or load its config with nc={info['nc']}"
            )
        return info

    def train(
        self,
        data: str | Path,
        *,
        epochs: int,
        imgsz: int,
        out_dir: Path,
        batch: int = 16,
        name: str = "finetune",
        progress: Callable[[str], None] | None = None,
        **overrides: Any,
    ) -> Path:
        """Fine-tune with Ultralytics' trainer, keeping the pruned architecture; returns best.pt.

        Ultralytics' trainer rebuilds a model from its YAML, which would undo pruning; handing it
        the live module (``trainer.model``) keeps every pruned width.
        """
        self._check_data(data)
        from ultralytics.models.yolo.detect import DetectionTrainer

        out_dir = Path(out_dir).resolve()
        args = {
            "model": self.source if str(self.source).endswith(".pt") else "edgeprune.pt",
            "data": str(data),
            "epochs": epochs,
            "imgsz": imgsz,
            "batch": batch,
            "device": _default_device(),
            "workers": 0,
            "amp": False,  # Ultralytics' AMP check downloads a model; the CPU gains nothing from AMP
            "plots": False,
            "project": str(out_dir),
            "name": name,
            "exist_ok": True,
            "verbose": False,
            **overrides,
        }
        trainer = DetectionTrainer(overrides=args)
        if progress is not None:
            trainer.add_callback("on_fit_epoch_end", _epoch_reporter(progress))
        for p in self.module.parameters():
            p.requires_grad_(True)
        trainer.model = self.module
        trainer.train()
        best = Path(trainer.best if trainer.best.exists() else trainer.last)
        ckpt = torch.load(best, map_location="cpu", weights_only=False)
        self.module = (ckpt.get("ema") or ckpt["model"]).float()
        return best

    def evaluate(
        self, data: str | Path, *, imgsz: int, batch: int = 16, **overrides: Any
    ) -> dict[str, float]:
        """mAP on the validation split with Ultralytics' own validator (the same metric users quote)."""
        self._check_data(data)
        from ultralytics.models.yolo.detect import DetectionValidator

        args = {
            "data": str(data),
            "imgsz": imgsz,
            "batch": batch,
            "device": _default_device(),
            "workers": 0,
            "plots": False,
            "verbose": False,
            "save_json": False,
            "half": False,
            **overrides,
        }
        validator = DetectionValidator(args=args)
        stats = validator(model=copy.deepcopy(self.module))  # the validator fuses conv+BN in place
        return {
            "map50_95": float(stats.get("metrics/mAP50-95(B)", 0.0)),
            "map50": float(stats.get("metrics/mAP50(B)", 0.0)),
        }


def _default_device() -> str:
    """The first GPU when there is one, else the CPU (pass ``device=...`` to choose)."""
    return "0" if torch.cuda.is_available() else "cpu"


def _epoch_reporter(progress: Callable[[str], None]) -> Callable[[Any], None]:
    """An Ultralytics callback printing one line per epoch: loss, mAP, elapsed and time left."""
    start = time.perf_counter()

    reported: set[int] = set()

    def report(trainer: Any) -> None:
        done, total = trainer.epoch + 1, trainer.epochs
        if done in reported or done > total:  # the final evaluation fires the callback once more
            return
        reported.add(done)
        elapsed = time.perf_counter() - start
        left = elapsed / done * (total - done)
        m = trainer.metrics or {}
        tloss = getattr(trainer, "tloss", None)
        if isinstance(tloss, dict):
            loss = sum(float(v) for v in tloss.values())
        else:
            loss = float(tloss.sum()) if tloss is not None else float("nan")
        progress(
            f"  epoch {done}/{total}  loss {loss:.3f}  mAP50 {m.get('metrics/mAP50(B)', 0):.3f}  "
            f"mAP50-95 {m.get('metrics/mAP50-95(B)', 0):.3f}  {elapsed:.0f}s elapsed, ~{left:.0f}s left"
        )

    return report


class UltralyticsAdapter(ModelAdapter):
    """Ultralytics checkpoints (``best.pt``) and model configs (``yolov8n.yaml``)."""

    name = "ultralytics"

    @classmethod
    def accepts(cls, source: Any) -> bool:
        if isinstance(source, nn.Module):
            return type(source).__module__.startswith("ultralytics.")
        return isinstance(source, (str, Path)) and str(source).lower().endswith((".pt", *_CONFIG_SUFFIXES))

    @classmethod
    def load(cls, source: Any, *, nc: int | None = None, **_: Any) -> UltralyticsDetector:
        """Load a checkpoint or build a model from a config (``nc`` overrides the config's class count)."""
        _optional.ultralytics()
        from ultralytics import YOLO

        if isinstance(source, nn.Module):
            return UltralyticsDetector(source, source=getattr(source, "pt_path", "") or "module")
        text = str(source)
        is_config = text.lower().endswith(_CONFIG_SUFFIXES)
        if not is_config and not Path(text).is_file():
            raise EdgepruneError(f"checkpoint not found: {text} (edgeprune never downloads weights)")
        try:
            yolo = YOLO(text)
        except FileNotFoundError as e:
            raise EdgepruneError(f"cannot load {text}: {e}") from None
        model = yolo.model
        if is_config and nc is not None and nc != model.model[-1].nc:
            args = model.args
            model = type(model)(model.yaml, nc=nc, verbose=False)
            model.args = args
        if not hasattr(model, "args") or not isinstance(model.args, dict):
            from ultralytics.cfg import DEFAULT_CFG_DICT

            model.args = dict(DEFAULT_CFG_DICT)
        return UltralyticsDetector(model, source=text)
