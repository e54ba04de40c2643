"""Ultralytics YOLO models: load from a checkpoint or a model config, prune, save, train, validate.

Everything here imports Ultralytics lazily through ``edgeprune._optional.ultralytics()``, which
switches off Ultralytics' network access (connectivity check, events, auto-install) first.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune import _optional
from edgeprune.errors import EdgepruneError, OptionError
from edgeprune.files import atomic_path, fsync_file
from edgeprune.models import ultralytics_resume
from edgeprune.models.base import Detector, ModelAdapter
from edgeprune.models.distill import OutputDistillation
from edgeprune.models.safe_load import (
    load_ultralytics_checkpoint,
    load_ultralytics_checkpoint_with_metadata,
)
from edgeprune.models.ultralytics_blocks import (
    HalvesSplit,
    OpaqueAttention,
    PartsSplit,
    Rewrites,
    halved_inputs,
    head_outputs,
    raw_trace_forward,
)
from edgeprune.progress import Task, track

_CONFIG_SUFFIXES = (".yaml", ".yml")
_CONFIG_HEADER = "# Written by edgeprune: the native-pruned network; Ultralytics builds it as it is.\n"


class FirstOutput(nn.Module):
    """Return only the decoded predictions of a YOLO model (eval mode returns ``(y, features)``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


class NormalizedBoxes(nn.Module):
    """``FirstOutput`` with box coordinates (and pose keypoints) divided by the input size.

    The decoded output is ``(batch, 4 + nc [+ extra], anchors)`` with boxes in pixels; divided by
    the image size they lie in [0, 1] like the class scores, so one INT8 scale serves the whole
    tensor. Ultralytics' LiteRT backend multiplies them back by the image size.
    """

    def __init__(self, model: nn.Module, imgsz: int, nc: int, kpt_shape: tuple[int, int] | None = None):
        super().__init__()
        self.inner = FirstOutput(model)
        scale = torch.ones(1, 4 + nc + (kpt_shape[0] * kpt_shape[1] if kpt_shape else 0), 1)
        scale[:, :4] = 1.0 / imgsz
        if kpt_shape:
            for k in range(kpt_shape[0]):
                start = 4 + nc + k * kpt_shape[1]
                scale[:, start : start + 2] = 1.0 / imgsz
        self.register_buffer("scale", scale, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        n = self.scale.shape[1]
        if y.shape[1] == n:
            return y * self.scale
        return torch.cat([y[:, :n] * self.scale, y[:, n:]], 1)  # segment: mask coefficients follow


# The prunable form of C2f-like blocks; kept under its first name for callers that check for it.
C2fSplit = HalvesSplit


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

    def export_module(
        self, imgsz: int, *, normalized_boxes: bool = False, end2end: bool = False
    ) -> nn.Module:
        """``end2end``: an NMS-free head (YOLOv10, YOLO26) exported with its one-to-one branch and
        top-k selection, so the artifact returns ``(batch, max_det, 6 [+ extra])`` final detections
        and no NMS follows; the model itself is left as it is."""
        if end2end:
            if getattr(self.head, "one2one_cv2", None) is None:
                raise OptionError(
                    f"{Path(str(self.source)).name}: its head has no one-to-one branch; `end2end` exports "
                    "NMS-free heads (YOLOv10, YOLO26)"
                )
            if normalized_boxes:
                raise OptionError(
                    "`end2end` exports for runtimes with normalized boxes (TFLite) are not supported yet"
                )
            model = copy.deepcopy(self.module)
            model.model[-1].end2end = True
            return FirstOutput(model)
        if not normalized_boxes:
            return self.inference_module()
        kpt = tuple(self.head.kpt_shape) if self.task == "pose" else None
        return NormalizedBoxes(self.module, imgsz, self.nc, kpt)

    def output_parity(
        self, reference: list[Any], candidate: list[Any], end2end: bool = False
    ) -> dict[str, Any]:
        """Boxes, class scores and decoded detections compared apart (``models/detections.py``),
        for heads whose output is ``(batch, 4 + nc [+ extra], anchors)``; RT-DETR's is not.
        ``end2end`` outputs are final detections, compared as such."""
        from edgeprune.models.detections import detection_parity, final_detection_parity

        if end2end:
            return final_detection_parity(reference, candidate)
        out = reference[0] if reference else None
        if (
            out is None
            or out.ndim != 3
            or out.shape[1] < 4 + self.nc
            or type(self.head).__name__ == "RTDETRDecoder"
        ):
            return {}
        return detection_parity(reference, candidate, self.nc)

    def count(self, imgsz: int) -> dict[str, int]:
        """Parameters and MACs; RT-DETR's encoder passes attention's ``value`` by keyword, which
        torch-pruning's counter cannot read, so it is handed over positionally while counting."""
        hooks = [
            m.register_forward_pre_hook(_value_positional, with_kwargs=True)
            for m in self.module.modules()
            if isinstance(m, nn.MultiheadAttention)
        ]
        try:
            return super().count(imgsz)
        finally:
            for h in hooks:
                h.remove()

    def ignored_layers(self) -> list[nn.Module]:
        """The head's prediction convs (all branches, one2one included), DFL, and kept-whole blocks.

        Inside ``prunable()`` this also lists what the block rewrites must keep (attention kept
        whole and the halves next to it, see ``ultralytics_blocks``).
        """
        rewrites = getattr(self, "_rewrites", None)
        return head_outputs(self.head) + (rewrites.kept() if rewrites is not None else [])

    def graph_options(self) -> dict[str, Any]:
        """Extra torch-pruning options while ``prunable()`` is active: trace forward, custom layers."""
        options: dict[str, Any] = {
            "customized_pruners": Rewrites.customized_pruners(),
            # fresh dicts: torch-pruning fills its (shared, mutable) defaults with live modules
            "in_channel_groups": halved_inputs(self.module),
            "out_channel_groups": {},
        }
        forward = raw_trace_forward(self.module)
        if forward is not None:
            options["forward_fn"] = forward
        return options

    def width_step(self, layer: nn.Module) -> int:
        """An attention's stream shrinks in whole heads (``OpaqueAttention``); other layers by 1."""
        return layer.head_dim if isinstance(layer, OpaqueAttention) and layer.stream_prunable else 1

    def equal_widths(self) -> list[tuple[nn.Module, nn.Module]]:
        """The two half convs of every split block: the stock block needs equal halves to merge back."""
        return [(m.cv_a.conv, m.cv_b.conv) for m in self.module.modules() if isinstance(m, HalvesSplit)]

    @contextmanager
    def prunable(self, rank_by_gradients: bool = False, keep_heads: bool = False) -> Iterator[nn.Module]:
        """Blocks rewritten into prunable equivalents (identical outputs); stock blocks again on exit."""
        stock = {m: name for name, m in self.module.named_modules()}
        rewrites = Rewrites().apply(self.module, rank_by_gradients=rank_by_gradients, keep_heads=keep_heads)
        self._rewrites, self._stock_names = rewrites, stock
        try:
            yield self.module
        finally:
            self._rewrites, self._stock_names = None, None
            rewrites.undo()

    # --- native pruning ----------------------------------------------------------------------
    def require_native_config(self) -> None:
        from edgeprune.models.ultralytics_native import mismatches, rebuild

        cfg = getattr(self.module, "yaml", None)
        if not isinstance(cfg, dict) or "backbone" not in cfg:
            raise EdgepruneError(
                "native pruning rewrites the model's config (model.yaml), and this model carries none: "
                "load it from an Ultralytics checkpoint or model YAML"
            )
        bad = mismatches(self.module, rebuild(self.module, cfg))
        if bad:
            raise EdgepruneError(
                "native pruning starts from a model its own config rebuilds (unpruned, or pruned "
                f"with --native), and this one differs ({'; '.join(bad[:3])}): prune the unpruned model"
            )

    def native_plan(self, free: Detector, align: int) -> nn.Module:
        from edgeprune.models.ultralytics_native import native_yaml, rebuild

        return rebuild(self.module, native_yaml(free.module, self.example_input(self.trace_imgsz()), align))

    def native_widths(self, target: nn.Module) -> dict[nn.Module, int]:
        from edgeprune.models.ultralytics_native import module_width

        names = getattr(self, "_stock_names", None) or {}
        rebuilt = dict(target.named_modules())
        widths = {}
        for layer, name in names.items():  # the stock modules the rewrites kept
            if name in rebuilt and (w := module_width(rebuilt[name])) is not None:
                widths[layer] = w
        for _, _, new in self._rewrites._done if self._rewrites is not None else []:
            if not isinstance(new, (HalvesSplit, PartsSplit)):
                continue  # attention wrappers: their stream width is the group's other layers'
            twin = rebuilt.get(names.get(new.block, ""))
            if twin is None:
                continue
            if isinstance(new, HalvesSplit):  # each half of the stock block's cv1
                widths[new.cv_a.conv] = widths[new.cv_b.conv] = int(twin.cv1.conv.out_channels) // 2
            else:  # CBLinear's parts
                widths.update({part: int(c) for part, c in zip(new.parts, twin.c2s, strict=True)})
        return widths

    def commit_native(self) -> None:
        from edgeprune.models.ultralytics_native import (
            mismatches,
            native_yaml,
            rebuild,
            unwrap_single_repeats,
        )

        self.native = False  # until the rewritten config is shown to rebuild the model
        unwrap_single_repeats(self.module)
        example = self.example_input(self.trace_imgsz())
        cfg = native_yaml(self.module, example)
        rebuilt = rebuild(self.module, cfg)
        bad = mismatches(self.module, rebuilt) or _computes_differently(self.module, rebuilt, example)
        if bad:
            raise EdgepruneError(
                f"native pruning left {len(bad)} tensors its config cannot rebuild "
                f"({'; '.join(bad[:3])}); prune this model without --native"
            )
        self.module.yaml = cfg
        self.native = True

    def repeats(self, native: bool = False) -> list[Any]:
        from edgeprune.models.ultralytics_depth import repeats
        from edgeprune.models.ultralytics_native import yaml_repeats

        found = repeats(self.module, self.example_input(self.trace_imgsz()))
        return yaml_repeats(self.module, found) if native else found

    def remove_repeats(self, units: Sequence[Any], native: bool = False) -> None:
        from edgeprune.models.ultralytics_depth import remove_repeats

        remove_repeats(self.module, units, self.example_input(self.trace_imgsz()))
        if native:
            self.commit_native()
        elif units:
            self.native = False

    def accumulate_gradients(self, data: str | Path, *, batches: int, imgsz: int, batch_size: int) -> None:
        """Back-propagate the model's own loss on the first ``batches`` batches of the train split.

        Images are letterboxed without augmentation (Ultralytics' validation transforms) and
        normalised as ``DetectionTrainer.preprocess_batch`` does. The loss needs train mode (the head
        returns raw maps); BatchNorm statistics are saved and restored, so only ``.grad`` changes.
        """
        if batches < 1:
            raise EdgepruneError(f"gradient batches must be >= 1, got {batches}")
        model = self.module
        requires = {p: p.requires_grad for p in model.parameters()}
        try:
            for p in model.parameters():
                p.requires_grad_(True)
            with self._loss_batches(data, "train", imgsz, batch_size, "criterion 'taylor'") as loader:
                model.train()
                with torch.enable_grad():
                    for i, batch in enumerate(loader):
                        if i >= batches:
                            break
                        loss, _ = model.loss(batch)
                        loss.sum().backward()
        finally:
            for p, flag in requires.items():
                p.requires_grad_(flag)

    def proxy_loss(self, data: str | Path, *, imgsz: int, batches: int = 2, batch_size: int = 16) -> float:
        total, seen = 0.0, 0
        with self._loss_batches(data, "val", imgsz, batch_size, "the accuracy proxy") as loader:
            self.module.eval()
            with torch.no_grad():
                for i, batch in enumerate(loader):
                    if i >= batches:
                        break
                    loss, _ = self.module.loss(batch)
                    total, seen = total + float(loss.sum()), seen + 1
        if not seen:
            raise EdgepruneError(f"{data}: the validation split has no images for the accuracy proxy")
        return total / seen

    @contextmanager
    def _loss_batches(
        self, data: str | Path, split: str, imgsz: int, batch_size: int, purpose: str
    ) -> Iterator[Iterator[dict[str, Any]]]:
        """Batches of ``split`` (letterboxed, no augmentation, normalised as the trainer does) with
        the model set up to compute its loss; afterwards the model's arguments, criterion, mode and
        BatchNorm statistics are as they were."""
        from ultralytics.cfg import DEFAULT_CFG_DICT
        from ultralytics.data.build import build_dataloader, build_yolo_dataset
        from ultralytics.utils import IterableSimpleNamespace

        if batch_size < 1:
            raise EdgepruneError(f"{purpose}: batch size must be >= 1, got {batch_size}")
        info = self._check_data(data)
        model = self.module
        if not hasattr(model, "init_criterion"):
            raise EdgepruneError(f"{type(model).__name__} has no training loss: {purpose} needs one")
        args = dict(model.args) if isinstance(model.args, dict) else vars(model.args)
        cfg = IterableSimpleNamespace(
            **{**DEFAULT_CFG_DICT, **args, "imgsz": imgsz, "batch": batch_size, "rect": False, "cache": False}
        )
        stride = max(int(model.stride.max()), 32)
        try:
            dataset = build_yolo_dataset(cfg, info[split], batch_size, info, mode="val", stride=stride)
        except (ValueError, KeyError) as e:
            raise EdgepruneError(f"{purpose}: cannot read {data} for {cfg.task}: {e}") from e
        loader = build_dataloader(
            dataset, batch_size, 0, shuffle=False, rank=-1, pin_memory=False, device="cpu"
        )
        device = next(model.parameters()).device

        def prepared() -> Iterator[dict[str, Any]]:
            for batch in loader:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                batch["img"] = batch["img"].float() / 255
                yield batch

        saved_args, saved_criterion = model.args, getattr(model, "criterion", None)
        buffers = {k: v.clone() for k, v in model.state_dict(keep_vars=True).items() if _is_bn_buffer(k)}
        was_training = model.training
        had_nc = "nc" in vars(model)
        model.args, model.criterion = cfg, None  # the criterion reads hyperparameters as attributes
        model.nc = self.nc  # as DetectionTrainer sets it (RT-DETR's loss reads it)
        try:
            yield prepared()
        except (ValueError, KeyError, IndexError, RuntimeError) as e:
            raise EdgepruneError(
                f"{purpose}: {type(model).__name__}'s loss failed on {data} "
                f"(does the dataset match the model's task?): {e}"
            ) from e
        finally:
            if not had_nc:
                del model.nc
            model.train(was_training)
            model.args, model.criterion = saved_args, saved_criterion
            with torch.no_grad():
                state = model.state_dict(keep_vars=True)
                for k, v in buffers.items():
                    state[k].copy_(v)

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
            "edgeprune": {**(metadata or {}), "native": self.native},
        }
        config = path.with_suffix(".yaml")
        staged = self._stage_config(config) if self.native else None
        with atomic_path(path) as tmp:  # a kill mid-write leaves the previous file or none, never half of one
            torch.save(ckpt, tmp)
        if staged is not None:
            staged.replace(config)
        elif config.is_file() and config.read_text(errors="replace").startswith(_CONFIG_HEADER):
            config.unlink()  # ours, from an earlier native save: it no longer describes this model
        return path

    def _stage_config(self, path: Path) -> Path:
        """The config written next to ``path`` under a temporary name, to be moved into place."""
        import yaml

        cfg = {k: v for k, v in self.module.yaml.items() if k != "yaml_file"}
        lines = [_CONFIG_HEADER.rstrip("\n")]
        lines.append(
            yaml.safe_dump({k: v for k, v in cfg.items() if k not in ("backbone", "head")}, sort_keys=False)
        )
        for part in ("backbone", "head"):  # one layer per line, as Ultralytics' own configs
            rows = [
                f"  - {yaml.safe_dump(row, default_flow_style=True, width=1 << 16).strip()}"
                for row in cfg[part]
            ]
            lines += [f"{part}:", *rows]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        fsync_file(tmp)
        return tmp

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
        output_distill: OutputDistillation | None = None,
        resume: bool = False,
        **overrides: Any,
    ) -> Path:
        """Fine-tune with Ultralytics' trainer, keeping the pruned architecture; returns best.pt.

        Ultralytics' trainer rebuilds a model from its YAML, which would undo pruning; handing it
        the live module (``trainer.model``) keeps every pruned width. ``distill_model`` (an
        override) distils from that teacher's features; ``output_distill`` adds its predictions
        (``models/distill.py``). ``resume=True`` continues a killed run of the same ``name`` after
        its last finished epoch (``models/ultralytics_resume.py``); this model must be the one that
        run started from.
        """
        self._check_data(data)
        from ultralytics.models.yolo.detect import DetectionTrainer

        out_dir = Path(out_dir).resolve()
        run_dir = out_dir / name
        resumed = None
        if resume:
            resumed, why = ultralytics_resume.read_state(run_dir, self.module)
            say = progress or (lambda _: None)
            if resumed is None:
                say(f"  fine-tuning from its start: {why}")
            elif resumed.epoch + 1 >= epochs:
                say(f"  fine-tuning had finished its {resumed.epoch + 1} epochs ({resumed.path})")
                return self._finished_run(run_dir, resumed)
            else:
                say(f"  fine-tuning resumes at epoch {resumed.epoch + 2}/{epochs} ({resumed.path})")
        if resumed is None:  # a fresh run: a state left by an earlier run in this folder is not its own
            (run_dir / ultralytics_resume.RESUME_FILE).unlink(missing_ok=True)
        args = {
            "model": self.source if str(self.source).endswith(".pt") else "edgeprune.pt",
            "data": str(data),
            "epochs": epochs,
            "imgsz": imgsz,
            "batch": batch,
            "device": _default_device(),
            "amp": False,  # Ultralytics' AMP check downloads a model; the CPU gains nothing from AMP
            "plots": False,
            "project": str(out_dir),
            "name": name,
            "exist_ok": True,
            "verbose": False,
            **overrides,
        }
        args.setdefault("workers", _default_workers(args["device"]))
        trainer = DetectionTrainer(overrides=args)
        if output_distill is not None:
            if args.get("distill_model") is None:
                raise OptionError("output distillation needs a teacher: `distill_model`")
            if "," in str(args["device"]):  # the callback lives in this process, not in DDP's workers
                raise OptionError(
                    "output distillation runs on one device: give one `device`, or distill features"
                )
            from edgeprune.models.distill import add_to_trainer

            teacher_map = None
            if output_distill.until_passed:  # the bar the student's validation mAP has to reach
                teacher_map = _teacher_map50_95(Path(args["distill_model"]), str(data), imgsz, batch * 2)
                if progress is not None:
                    progress(
                        f"  output distillation until the student reaches the teacher's mAP50-95 {teacher_map:.4f}"
                    )
            trainer.add_callback(
                "on_pretrain_routine_end",
                lambda tr: add_to_trainer(tr, output_distill, teacher_map, progress),
            )
        ultralytics_resume.save_atomically(trainer)
        if resumed is not None:
            ultralytics_resume.resume_from(trainer, resumed)
        for p in self.module.parameters():
            p.requires_grad_(True)
        trainer.model = self.module
        with track(epochs, "epochs") as task:
            if progress is not None:
                trainer.add_callback("on_fit_epoch_end", _epoch_reporter(progress, task))
            trainer.train()
        best = Path(trainer.best if trainer.best.exists() else trainer.last)
        self.module = load_ultralytics_checkpoint(best)
        return best

    def _finished_run(self, run_dir: Path, resumed: ultralytics_resume.ResumeState) -> Path:
        """The weights of a run that had finished its epochs: best.pt, or the last epoch's EMA when
        the kill came while Ultralytics rewrote best.pt at the very end."""
        best = run_dir / "weights" / "best.pt"
        try:
            self.module = load_ultralytics_checkpoint(best)
            return best
        except EdgepruneError:
            self.module.load_state_dict(ultralytics_resume.student_state(resumed.state["ema"]))
            return resumed.path

    def evaluate(
        self,
        data: str | Path,
        *,
        imgsz: int,
        batch: int = 16,
        square: bool = False,
        breakdown: bool = False,
        **overrides: Any,
    ) -> dict[str, Any]:
        """mAP on the validation split with Ultralytics' own validator and `model.val()`'s settings.

        ``square=True`` letterboxes every image to ``imgsz x imgsz`` one at a time, as an exported
        artifact is fed, so the number compares with ``evaluate_artifact``'s. ``breakdown=True``
        adds AP per class and per object size of the same predictions (``coco_breakdown``).
        """
        self._check_data(data)
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
            "rect": True,  # as `YOLO(...).val()` does, so the numbers match what users get themselves
            **overrides,
        }
        if square:  # what an exported fixed-shape artifact sees: every image letterboxed to imgsz x imgsz
            args.update(rect=False, batch=1)
        return _validate(
            args, breakdown, model=copy.deepcopy(self.module)
        )  # the validator fuses conv+BN in place

    def evaluate_artifact(
        self, artifact: Path, data: str | Path, *, imgsz: int, breakdown: bool = False
    ) -> dict[str, Any]:
        """mAP of an exported artifact through Ultralytics' own validator and backends, which
        read the metadata edgeprune writes into (or beside) the artifact."""
        self._check_data(data)

        if self.task != "detect":
            raise EdgepruneError(
                f"artifact accuracy is measured for detection models; this one is {self.task}"
            )
        if Path(artifact).suffix == ".xml":  # Ultralytics recognises OpenVINO by its *_openvino_model folder
            artifact = Path(artifact).parent
        args = {
            "model": str(artifact), "data": str(data), "imgsz": imgsz, "batch": 1, "device": "cpu",
            "workers": 0, "plots": False, "verbose": False, "save_json": False, "half": False, "rect": False,
        }  # fmt: skip
        return _validate(args, breakdown)

    @property
    def task(self) -> str:
        _optional.ultralytics()
        from ultralytics.nn.tasks import guess_model_task

        return guess_model_task(self.module)

    def export_metadata(self, imgsz: int, batch: int = 1, end2end: bool = False) -> dict[str, Any]:
        """What Ultralytics' exporter writes, so ``YOLO(artifact)`` predicts and validates it."""
        from edgeprune import __version__

        names = getattr(self.module, "names", None) or {i: f"class{i}" for i in range(self.nc)}
        meta: dict[str, Any] = {
            "description": f"edgeprune {__version__} export of {Path(str(self.source)).name}",
            "author": "edgeprune",
            "version": __version__,
            "stride": int(self.module.stride.max()),
            "task": self.task,
            "batch": batch,
            "imgsz": [imgsz, imgsz],
            "names": dict(names) if not isinstance(names, dict) else names,
            "channels": 3,
            "end2end": end2end,  # False: the graph returns the one-to-many predictions and NMS follows
        }
        if meta["task"] == "pose":
            meta["kpt_shape"] = list(self.head.kpt_shape)
        return meta

    def float_node_patterns(self, parts: Sequence[str], naming: str = "onnx") -> list[str]:
        """``box_decode``: every node directly in the head's scope (reshapes, anchor arithmetic,
        the concat of boxes and sigmoid scores), not inside its prediction branches, and the box
        normalization of ``NormalizedBoxes``; ``dfl``: the distribution-focal decode."""
        i = len(self.module.model) - 1
        if naming == "litert":  # module class + attribute per level, ';N' per tensor, ';;' joins fused names
            known = {
                "box_decode": rf"(DetectionModel_model/[^/;]+_{i}|NormalizedBoxes);\d*(;|$)",
                "dfl": rf"_{i}/[^/;]*DFL_dfl",
            }
        else:
            head = re.escape(f"model.{i}")
            known = {"box_decode": rf"/{head}/[^/]+$", "dfl": rf"/{head}/dfl/"}
        return [known[p] if p in known else _scope_pattern(p, naming) for p in parts]

    def check_teacher(self, teacher: Detector, source: str) -> None:
        """Output distillation pairs the two heads anchor by anchor and class by class: the
        teacher needs this model's task, classes, box encoding and strides (any size or depth)."""
        if not isinstance(teacher, UltralyticsDetector):
            raise EdgepruneError(f"teacher {source}: not an Ultralytics YOLO checkpoint")
        mine, theirs = self.module.model[-1], teacher.module.model[-1]
        facts = {
            "head": lambda h: type(h).__name__,
            "nc (classes)": lambda h: h.nc,
            "reg_max (box encoding)": lambda h: getattr(h, "reg_max", None),
            "stride": lambda h: [float(x) for x in getattr(h, "stride", [])],
            "one-to-one branch (NMS-free head)": lambda h: getattr(h, "one2one_cv2", None) is not None,
        }
        for name, fact in facts.items():
            if fact(mine) != fact(theirs):
                raise EdgepruneError(
                    f"teacher {source}: its {name} is {fact(theirs)}, the model's is {fact(mine)}; a teacher "
                    "must predict the same classes with the same head (e.g. a larger model of the same family)"
                )

    def quantization_units(self) -> list[str]:
        """The decode parts, then each prediction branch of the head (``model.22.cv3.1``: one
        level's class convs), then every other top-level layer (``model.7``)."""
        *body, head = self.module.model
        units = ["box_decode", *(["dfl"] if getattr(head, "reg_max", 1) > 1 else [])]
        units += [
            f"model.{head.i}.{name}.{k}"
            for name, child in head.named_children()
            if isinstance(child, nn.ModuleList)
            for k in range(len(child))
        ]
        return units + [f"model.{m.i}" for m in body]


def _scope_pattern(unit: str, naming: str) -> str:
    """The nodes a converter makes from module ``unit`` (``model.22.cv3.1``, ``model.7``): ONNX (and
    OpenVINO) name them by module path, one ``/``-separated level per layer and per list item
    (``/model.22/cv3.1/cv3.1.0/conv/Conv``); LiteRT by class and index (``...Detect_22/...Sequential_1/
    ...Conv_0/...``), without the list's name, so there ``cv2.1`` and ``cv3.1`` are both of level 1."""
    m = re.fullmatch(r"model\.(\d+)(?:\.(\w+)\.(\d+))?", unit)
    if m is None:
        raise OptionError(f"unknown float unit {unit!r}: expected box_decode, dfl or a layer such as model.7")
    head, name, k = m.groups()
    if naming == "litert":  # a list's items are named by class and index, not by the list: cv2.k = cv3.k
        scope = rf"DetectionModel_model/[^/;]+_{head}/"
        return scope + (rf"[^/;]+_{k}/" if name else "")
    scope = rf"/model\.{head}/"
    return scope + (rf"{name}\.{k}/" if name else "")


def _computes_differently(model: nn.Module, rebuilt: nn.Module, example: torch.Tensor) -> list[str]:
    """Empty if ``rebuilt``, given ``model``'s weights, predicts what ``model`` predicts on
    ``example`` (shapes alone miss e.g. an attention's head count); else what differs."""
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.to(example.device)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            a, b = FirstOutput(model)(example), FirstOutput(rebuilt.eval())(example)
    finally:
        model.train(was_training)
    a, b = (y[0] if isinstance(y, (tuple, list)) else y for y in (a, b))
    if a.shape == b.shape and torch.allclose(a, b, atol=1e-4, rtol=1e-3):
        return []
    return [f"predictions differ (max {float((a - b).abs().max()) if a.shape == b.shape else 'shape'})"]


def _validate(args: dict[str, Any], breakdown: bool, model: nn.Module | None = None) -> dict[str, Any]:
    """Ultralytics' DetectionValidator on ``args`` (a module's or the artifact in ``args``)."""
    if breakdown:
        from edgeprune.models.coco_breakdown import validate_with_breakdown

        stats, parts = validate_with_breakdown(args, model)
        return {**_metrics(stats), **parts}
    from ultralytics.models.yolo.detect import DetectionValidator

    validator = DetectionValidator(args=args)
    return _metrics(validator(model=model) if model is not None else validator())


def _metrics(stats: dict[str, Any]) -> dict[str, float]:
    return {
        "map50_95": float(stats.get("metrics/mAP50-95(B)", 0.0)),
        "map50": float(stats.get("metrics/mAP50(B)", 0.0)),
    }


def _value_positional(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    if len(args) == 2 and "value" in kwargs:
        kwargs = dict(kwargs)
        args = (*args, kwargs.pop("value"))
    return args, kwargs


def _is_bn_buffer(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def _teacher_map50_95(teacher: Path, data: str, imgsz: int, batch: int) -> float:
    """The distillation teacher's validation mAP50-95, as the trainer validates (its batch is
    twice the training batch); once per teacher file and data, as a search fine-tunes often."""
    stat = teacher.stat()
    return _teacher_score(str(teacher.resolve()), stat.st_mtime_ns, stat.st_size, data, imgsz, batch)


@functools.lru_cache(maxsize=8)
def _teacher_score(teacher: str, mtime_ns: int, size: int, data: str, imgsz: int, batch: int) -> float:
    from edgeprune.models import load_model

    return float(load_model(teacher).evaluate(data, imgsz=imgsz, batch=batch)["map50_95"])


def _default_device() -> str:
    """The first GPU when there is one, else the CPU (pass ``device=...`` to choose)."""
    return "0" if torch.cuda.is_available() else "cpu"


def _default_workers(device: Any) -> int:
    """Data-loading processes for training: none on the CPU, where the same cores run the model;
    Ultralytics' own default of 8 (at most one per core) to keep GPUs fed. ``workers=`` overrides."""
    if str(device).strip().lower() in ("cpu", "mps"):
        return 0
    return min(8, os.cpu_count() or 1)


def _epoch_reporter(progress: Callable[[str], None], task: Task) -> Callable[[Any], None]:
    """An Ultralytics callback printing one line per epoch: loss, mAP, elapsed and time left."""
    start = time.perf_counter()

    reported: set[int] = set()

    def report(trainer: Any) -> None:
        done, total = trainer.epoch + 1, trainer.epochs
        if done in reported or done > total:  # the final evaluation fires the callback once more
            return
        reported.add(done)
        elapsed = time.perf_counter() - start
        left = elapsed / (done - trainer.start_epoch) * (total - done)  # a resumed run starts later
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
        task.advance()

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
    def load(
        cls, source: Any, *, nc: int | None = None, trust_checkpoint: bool = False, **_: Any
    ) -> UltralyticsDetector:
        """Load a checkpoint or build a model from a config (``nc`` overrides the config's class count).

        Checkpoints are unpickled through edgeprune's allow-list (``safe_load``) unless
        ``trust_checkpoint``: Ultralytics' own loader would run whatever code the file carries.
        """
        _optional.ultralytics()
        from ultralytics import RTDETR, YOLO

        if isinstance(source, nn.Module):
            return UltralyticsDetector(source, source=getattr(source, "pt_path", "") or "module")
        text = str(source)
        is_config = text.lower().endswith(_CONFIG_SUFFIXES)
        if not is_config and not Path(text).is_file():
            raise EdgepruneError(f"checkpoint not found: {text} (edgeprune never downloads weights)")
        meta: dict[str, Any] = {}
        if not is_config:
            model, meta = load_ultralytics_checkpoint_with_metadata(text, trust=trust_checkpoint)
        else:
            try:
                model = (RTDETR if Path(text).stem.lower().startswith("rtdetr") else YOLO)(text).model
            except FileNotFoundError as e:
                raise EdgepruneError(f"cannot load {text}: {e}") from None
            except (ValueError, KeyError, SyntaxError, TypeError, IndexError, AttributeError, NameError) as e:
                detail = str(e).splitlines()[0] if str(e) else ""
                raise EdgepruneError(
                    f"{text}: not a model config Ultralytics can build ({type(e).__name__}: {detail}); "
                    "start from a shipped one such as yolov8n.yaml"
                ) from None
        if is_config and nc is not None and nc != model.model[-1].nc:
            args = model.args
            model = type(model)(model.yaml, nc=nc, verbose=False)
            model.args = args
        if not hasattr(model, "args") or not isinstance(model.args, dict):
            from ultralytics.cfg import DEFAULT_CFG_DICT

            model.args = dict(DEFAULT_CFG_DICT)
        detector = UltralyticsDetector(model, source=text)
        detector.native = bool(meta.get("native"))  # its config says its shapes (native pruning)
        return detector
