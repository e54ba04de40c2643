"""The model-adapter interface: what the pruner, exporter and trainer need from a model family."""

from __future__ import annotations

import contextlib
import copy
import io
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from edgeprune.errors import EdgepruneError, OptionError


class Detector(ABC):
    """A loaded model plus the family-specific knowledge to prune, save, train and evaluate it.

    ``module`` is the live ``nn.Module``; pruning changes it in place.
    """

    family: ClassVar[str]

    def __init__(self, module: nn.Module, source: str):
        self.module = module
        self.source = source

    def clone(self) -> Detector:
        """An independent copy (the module is deep-copied), e.g. to prune while keeping the baseline."""
        twin = copy.copy(self)
        twin.module = copy.deepcopy(self.module)
        return twin

    # --- shapes -------------------------------------------------------------------------
    def example_input(self, imgsz: int, batch: int = 1) -> torch.Tensor:
        """A normalized image batch of the size the model is run at."""
        p = next(self.module.parameters())
        return torch.rand(batch, 3, imgsz, imgsz, dtype=p.dtype, device=p.device)

    def trace_imgsz(self) -> int:
        """The smallest input that exercises every layer: channel structure does not depend on it."""
        return 64

    @abstractmethod
    def inference_module(self) -> nn.Module:
        """A module returning plain tensors (no lists of feature maps), for export and parity checks."""

    def export_module(
        self, imgsz: int, *, normalized_boxes: bool = False, end2end: bool = False
    ) -> nn.Module:
        """The module a runtime exports. ``normalized_boxes``: box coordinates divided by the image
        size, so boxes and [0, 1] scores share a range (what full-INT8 TFLite needs to keep the
        scores, and what Ultralytics' LiteRT backend expects). ``end2end``: final detections from
        an NMS-free head."""
        if normalized_boxes:
            raise EdgepruneError(f"{self.family} models have no box outputs to normalize")
        if end2end:
            raise EdgepruneError(f"{self.family} models have no NMS-free head to export end to end")
        return self.inference_module()

    def output_parity(
        self, reference: list[Any], candidate: list[Any], end2end: bool = False
    ) -> dict[str, Any]:
        """What an export's parity check reads in the outputs beyond one cosine over everything:
        an artifact's outputs (``candidate``) against PyTorch's (``reference``). None here."""
        return {}

    # --- pruning ------------------------------------------------------------------------
    def ignored_layers(self) -> list[nn.Module]:
        """Layers whose output channels must stay (prediction convs of a head, say)."""
        return []

    def graph_options(self) -> dict[str, Any]:
        """Extra torch-pruning options for this family (custom pruners, channel groups, a trace forward)."""
        return {}

    @contextmanager
    def prunable(self, rank_by_gradients: bool = False, keep_heads: bool = False) -> Iterator[nn.Module]:
        """Rewrite blocks into prunable equivalents for the duration of the block, then restore.
        ``rank_by_gradients``: the criterion has gradients (Taylor), so units a rewrite ranks
        itself (an attention's heads) are ranked by them too. ``keep_heads``: attention blocks are
        kept whole (``PruneConfig.keep_heads``)."""
        yield self.module

    def width_step(self, layer: nn.Module) -> int:
        """Inside ``prunable()``: the step in which ``layer``'s output width may shrink (an
        attention's head width: its stream loses whole heads); 1 for most layers."""
        return 1

    def equal_widths(self) -> list[tuple[nn.Module, nn.Module]]:
        """Pairs of layers whose output widths must stay equal (read inside ``prunable()``)."""
        return []

    # --- native pruning: widths the model's own config can say --------------------------------
    native: bool = False
    """True once native pruning has rewritten the model's config to build its pruned shapes."""

    def require_native_config(self) -> None:
        """Raise ``EdgepruneError`` unless native pruning can start from this model (its config
        rebuilds it)."""
        raise OptionError(
            f"native pruning is for Ultralytics models; {self.family} models have no config to rewrite"
        )

    def native_plan(self, free: Detector, align: int) -> Any:
        """The model native pruning prunes to: ``free`` (this model pruned without constraints)
        rounded to widths this family's config can say, built by the family's own library."""
        raise OptionError(
            f"native pruning is for Ultralytics models; {self.family} models have no config to rewrite"
        )

    def native_widths(self, target: Any) -> dict[nn.Module, int]:
        """Inside ``prunable()``: the output width ``target`` (from ``native_plan``) gives each
        layer it constrains."""
        return {}

    def commit_native(self) -> None:
        """After native pruning: rewrite the config to say the pruned shapes (checked by
        rebuilding it), or raise ``EdgepruneError`` naming what it cannot say."""
        raise OptionError(f"native pruning is for Ultralytics models, not {self.family}")

    def repeats(self, native: bool = False) -> list[Any]:
        """Whole units this model can lose (``Repeat``s of ``models/ultralytics_depth.py``); none
        for a family edgeprune cannot remove layers from. ``native``: only those whose removal
        the model's config can say (a repeat count ``n``)."""
        return []

    def remove_repeats(self, units: Sequence[Any], native: bool = False) -> None:
        """Remove ``units`` (from ``repeats()``) in place; ``native``: and rewrite the config to
        say it (``commit_native``)."""
        raise OptionError(f"{self.family} models have no repeats edgeprune can remove: prune widths only")

    def proxy_loss(self, data: str | Path, *, imgsz: int, batches: int = 2, batch_size: int = 16) -> float:
        """The model's training loss on the first ``batches`` batches of the validation split, in
        eval mode without gradients: a quick accuracy proxy (lower is better) for comparing
        candidates of different kinds."""
        raise OptionError(
            f"comparing candidates by accuracy needs a training loss; {self.family} models have none in edgeprune"
        )

    def accumulate_gradients(self, data: str | Path, *, batches: int, imgsz: int, batch_size: int) -> None:
        """Back-propagate the model's own training loss on ``batches`` batches of ``data``'s train split.

        Gradients add up in ``.grad`` of ``self.module``'s parameters (for gradient-based importance
        such as Taylor); everything else (weights, BatchNorm statistics, train/eval mode) is left as
        it was. Called inside ``prunable()``, so the rewritten modules receive the gradients.
        """
        raise OptionError(
            f"criterion 'taylor' needs a model family with a training loss and `data`; "
            f"{self.family} models have no training loss in edgeprune"
        )

    def recalibrate_batchnorm(
        self, data: str | Path, *, imgsz: int, images: int = 256, batch_size: int = 32
    ) -> int:
        """Re-estimate every BatchNorm's running mean and variance on ``images`` train images.

        Removing channels changes what the layers after them receive, so the statistics they
        learned no longer fit: a pruned detector can score near zero until fine-tuning re-learns
        them, and gradients taken through it (Taylor importance) are off too. A forward pass in
        train mode over letterboxed train images (no labels, no gradients, weights untouched)
        re-estimates them. Returns how many images were used.
        """
        from edgeprune.calibration.sources import CalibrationData

        norms = [m for m in self.module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        source = CalibrationData.from_source(data, imgsz, images, split="train")
        if not norms or not len(source):
            return 0
        momenta = [bn.momentum for bn in norms]
        was_training = self.module.training
        device = next(self.module.parameters()).device
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # a plain average over every batch
        self.module.train()
        try:
            with torch.no_grad():
                for batch in source.batches(batch_size):
                    self.module(torch.from_numpy(batch).to(device))
        finally:
            for bn, momentum in zip(norms, momenta, strict=True):
                bn.momentum = momentum
            self.module.train(was_training)
        return len(source)

    # --- persistence and training ----------------------------------------------------------
    @abstractmethod
    def save(self, path: Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write a checkpoint that the family's own tooling loads."""

    def train(self, data: str | Path, *, epochs: int, imgsz: int, out_dir: Path, **kwargs: Any) -> None:
        """Fine-tune in place, keeping the (pruned) architecture."""
        raise OptionError(
            f"{self.family} models have no training loop in edgeprune: prune without fine-tuning (no `epochs`), "
            "save the pruned model and fine-tune it with your own training code"
        )

    def evaluate(self, data: str | Path, *, imgsz: int, **kwargs: Any) -> dict[str, Any]:
        """Accuracy on the validation split, e.g. ``{"map50_95": .., "map50": ..}``; with
        ``breakdown=True`` also ``per_class`` and ``by_size`` (``models/coco_breakdown.py``)."""
        raise OptionError(
            f"{self.family} models have no detection metric in edgeprune: leave out `data` (accuracy is "
            "measured for Ultralytics models) and evaluate the pruned checkpoint with your own code"
        )

    def evaluate_artifact(
        self, artifact: Path, data: str | Path, *, imgsz: int, breakdown: bool = False
    ) -> dict[str, Any]:
        """Accuracy of an exported artifact (ONNX, OpenVINO IR, ...) on the validation split, with
        the same metric and preprocessing as ``evaluate(..., square=True)``."""
        raise OptionError(
            f"{self.family} artifacts have no detection metric in edgeprune: export without `data` (parity "
            "against PyTorch is still measured) and evaluate the artifact with your own code"
        )

    # --- export --------------------------------------------------------------------------
    def export_metadata(self, imgsz: int, batch: int = 1, end2end: bool = False) -> dict[str, Any]:
        """Key/values stored in the exported artifact so that the family's tooling can run it."""
        return {}

    def float_node_patterns(self, parts: Sequence[str], naming: str = "onnx") -> list[str]:
        """Regular expressions over exported node names that select the named ``parts``
        (``box_decode``, ``dfl``) to be left in float by quantization. ``naming`` is how the
        runtime's converter names nodes from module paths: ``onnx`` (``/model/model.22/Add``,
        also OpenVINO) or ``litert`` (``...DetectionModel_model/...Detect_22;3``). ``parts`` may
        also name units of ``quantization_units``. A family without such parts returns none."""
        return []

    def check_teacher(self, teacher: Detector, source: str) -> None:
        """Raise ``EdgepruneError`` unless ``teacher`` (loaded from ``source``) can teach this model
        by distillation. Families without distillation refuse any."""
        raise EdgepruneError(f"{self.family} models are not fine-tuned by distillation; drop `teacher`")

    def quantization_units(self) -> list[str]:
        """What accuracy-controlled INT8 (``accuracy_control.py``) may keep in float, one unit at a
        time; names ``float_node_patterns`` turns into node patterns. None here."""
        return []

    # --- facts --------------------------------------------------------------------------
    def count(self, imgsz: int) -> dict[str, int]:
        """Parameters and multiply-accumulates at ``imgsz``."""
        import torch_pruning as tp

        module = self.inference_module()
        was_training = self.module.training
        self.module.eval()
        try:
            # the counter prints a warning for every module instance used twice (YOLOv6's shared ReLU)
            with contextlib.redirect_stdout(io.StringIO()):
                macs, params = tp.utils.count_ops_and_params(module, self.example_input(imgsz))
        finally:
            self.module.train(was_training)
        return {"params": int(params), "macs": int(macs)}

    def channels(self) -> dict[str, int]:
        """Output channels of every convolution and linear layer, by qualified name."""
        out: dict[str, int] = {}
        for name, m in self.module.named_modules():
            if isinstance(m, nn.Conv2d):
                out[name] = m.out_channels
            elif isinstance(m, nn.Linear):
                out[name] = m.out_features
        return out

    def layer_macs(self, imgsz: int) -> dict[str, int]:
        """Multiply-accumulates of every convolution and linear layer at ``imgsz``, by qualified
        name (one forward pass of the inference module, counted from each layer's output size)."""
        import torch

        macs: dict[str, int] = {}

        def counter(name: str) -> Any:
            def hook(m: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
                if isinstance(m, nn.Conv2d):
                    per_output = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
                else:
                    per_output = m.in_features
                macs[name] = macs.get(name, 0) + int(output.numel()) * per_output  # a batch of one

            return hook

        handles = [
            m.register_forward_hook(counter(name))
            for name, m in self.module.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))
        ]
        was_training = self.module.training
        self.module.eval()
        try:
            x = self.example_input(imgsz)  # a batch of one (a tuple of arguments for some families)
            with torch.no_grad():
                self.inference_module()(*x) if isinstance(x, tuple) else self.inference_module()(x)
        finally:
            self.module.train(was_training)
            for h in handles:
                h.remove()
        return macs

    def layer_changes(
        self, before: dict[str, int], before_macs: dict[str, int], imgsz: int
    ) -> list[dict[str, Any]]:
        """Per layer: output channels and MACs before (as given) and now; a layer removed has 0."""
        channels, macs = self.channels(), self.layer_macs(imgsz)
        return [
            {"name": n, "before": c, "after": channels.get(n, 0),
             "macs_before": before_macs.get(n, 0), "macs_after": macs.get(n, 0)}
            for n, c in before.items()
        ]  # fmt: skip


class ModelAdapter(ABC):
    """Recognises a model source and loads it as a ``Detector``. Registered in ``MODELS``."""

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def accepts(cls, source: Any) -> bool:
        """Whether this adapter can load ``source`` (a path, a config name or a module). Must be cheap."""

    @classmethod
    @abstractmethod
    def load(cls, source: Any, **kwargs: Any) -> Detector:
        """Load ``source``."""
