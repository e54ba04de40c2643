"""Output-level knowledge distillation for Ultralytics detectors: the pruned student learns the
unpruned teacher's predictions, anchor by anchor.

A pruned model keeps its head's output shapes (classes, DFL bins, anchors), so the student's
raw head outputs line up with the teacher's one to one and need no adapter (feature
distillation, Ultralytics' ``distill_model``, needs learned projections because the pruned
feature widths differ). Two terms, both with temperature ``T`` and weighted per anchor by the
teacher's confidence (its highest class probability), so background anchors count little:

* **classes**: the KL divergence between the teacher's and the student's per-class Bernoulli
  probabilities, ``sigmoid(logit / T)``;
* **boxes**: for heads with a distribution over box sides (DFL, ``reg_max > 1``), the KL
  divergence between the teachers's and the student's ``softmax(bins / T)`` for each of the 4
  sides; for heads that regress sides directly (``reg_max == 1``, YOLO26), the L1 distance.

Both are zero when the student predicts exactly what the teacher does. Heads with a one-to-one
branch (YOLOv10, YOLO26) are distilled on both branches, averaged.

A student can outgrow its teacher: pruned from a checkpoint that was not trained to convergence,
it is fine-tuned further and passes the teacher's accuracy part way through, after which the
teacher's predictions pull it back. With ``gate`` the terms count on a batch only while the
teacher's own detection loss on that batch (the student's criterion on the teacher's outputs,
against the same labels) is below the student's: distillation switches itself off where the
teacher no longer knows better. A teacher can keep winning that comparison on images it was trained
on, so with ``until_passed`` distillation also stops for good after the first epoch whose
validation mAP50-95 (the trainer's own, on the EMA weights) reaches the teacher's on the same
split: from then on the student fine-tunes as without distillation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from edgeprune.models.ultralytics_resume import carried


@dataclass(frozen=True)
class OutputDistillation:
    """Weights and temperature of output-level distillation.

    The defaults won ``benchmarks/distill_ablation.py`` (docs/benchmarks.md): with a teacher
    stronger than the student, weights 0.25 gained 0.65 points mAP50-95 over no distillation,
    where weights 1.0 lost 0.26 and temperature 1 gained 0.24 (the first fine-tuning recipe).
    With today's recipe, on one pruned student: from a stronger teacher +0.34, gated or not (the
    gate never closed); from the unconverged model it was pruned from, -0.58 gated against -0.91
    ungated. So the gate is on. On retrained models: from a teacher 9 points ahead, +1.57; from the
    model pruned, with the stop once the student passes it (``until_passed``), -0.77 on one seed
    and -0.06 on the mean of three (same-seed differences -0.59 to +0.31): level with none.

    Attributes:
        cls_weight: weight of the class term.
        box_weight: weight of the box term.
        temperature: softening of both distributions (the terms are scaled by ``T**2`` so their
            gradients keep their size as ``T`` changes).
        gate: distil a batch only when the teacher's detection loss on it is below the student's.
        until_passed: stop distilling after the first epoch whose validation mAP50-95 reaches the
            teacher's (``PassedTeacher``).
    """

    cls_weight: float = 0.25
    box_weight: float = 0.25
    temperature: float = 2.0
    gate: bool = True
    until_passed: bool = True

    def __post_init__(self) -> None:
        from edgeprune.errors import OptionError

        if self.cls_weight < 0 or self.box_weight < 0:
            raise OptionError("distillation weights must be >= 0")
        if not self.temperature > 0:
            raise OptionError(f"the distillation temperature must be > 0, got {self.temperature}")

    def loss(self, student: Any, teacher: Any, reg_max: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The class and box terms between two heads' raw outputs (``{"boxes", "scores"}``, or
        ``{"one2many": ..., "one2one": ...}``; a head in eval mode returns them second in a tuple);
        gradients reach the student only."""
        # a head in eval mode (the frozen teacher) returns (decoded, raw outputs)
        student, teacher = (o[1] if isinstance(o, tuple) else o for o in (student, teacher))
        branches = [b for b in ("one2many", "one2one") if isinstance(student, dict) and b in student]
        pairs = [(student[b], teacher[b]) for b in branches] or [(student, teacher)]
        terms = [self._branch(s, t, reg_max) for s, t in pairs]
        cls = torch.stack([c for c, _ in terms]).mean()
        box = torch.stack([b for _, b in terms]).mean()
        return self.cls_weight * cls, self.box_weight * box

    def _branch(self, s: dict, t: dict, reg_max: int) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.temperature
        t_scores, t_boxes = t["scores"].detach(), t["boxes"].detach()
        p_t = torch.sigmoid(t_scores / T)  # (B, nc, A)
        weight = torch.sigmoid(t_scores).amax(dim=1)  # (B, A): the teacher's confidence per anchor
        norm = weight.sum().clamp(min=1e-6)
        # Bernoulli KL(p_t || p_s) = BCE(s, p_t) - BCE(t, p_t): zero when the logits agree
        cls = F.binary_cross_entropy_with_logits(s["scores"] / T, p_t, reduction="none") - (
            F.binary_cross_entropy_with_logits(t_scores / T, p_t, reduction="none")
        )
        cls_term = (cls.sum(dim=1) * weight).sum() / norm * T * T
        b, _, a = s["boxes"].shape
        if reg_max > 1:
            s_bins = s["boxes"].view(b, 4, reg_max, a) / T
            t_bins = t_boxes.view(b, 4, reg_max, a) / T
            kl = F.kl_div(
                F.log_softmax(s_bins, dim=2), F.log_softmax(t_bins, dim=2), log_target=True, reduction="none"
            )
            box = kl.sum(dim=2).mean(dim=1) * T * T  # (B, A)
        else:
            box = (s["boxes"] - t_boxes).abs().mean(dim=1)
        box_term = (box * weight).sum() / norm
        return cls_term, box_term


def trainer_overrides(mode: str | None, teacher: str | Path | None) -> dict[str, Any]:
    """What ``Detector.train`` gets for a distillation mode (``None`` or one of
    ``pruning.options.DISTILL_MODES``) from ``teacher``: Ultralytics' ``distill_model`` (its
    feature term, off with ``dis=0`` for ``output``) and this module's ``output_distill``."""
    if mode is None:
        return {}
    overrides: dict[str, Any] = {"distill_model": str(teacher)}
    if mode == "output":
        overrides["dis"] = 0.0
    if mode in ("output", "both"):
        overrides["output_distill"] = OutputDistillation()
    return overrides


def add_to_trainer(
    trainer: Any,
    kd: OutputDistillation,
    teacher_map: float | None = None,
    say: Callable[[str], None] | None = None,
) -> None:
    """Add output distillation to the ``DistillationModel`` an Ultralytics trainer built from its
    ``distill_model`` argument; for its ``on_pretrain_routine_end`` callback.

    The trainer's distillation loss (feature distillation, weighted by its ``dis`` argument; 0
    turns it off) gains the output terms. The wrapper's hooks already capture both heads' raw
    outputs; only the live training model changes (checkpoints come from the EMA copy, student
    only, as without distillation). ``teacher_map`` (the teacher's validation mAP50-95) is what
    ``kd.until_passed`` compares with; ``say`` is told when distillation stops.
    """
    from ultralytics.utils.torch_utils import unwrap_model

    model = unwrap_model(trainer.model)
    feature_loss = model.loss
    head = len(model.feats_idx) - 1  # the hooks' last level is the Detect head's output
    reg_max = model.student_model.model[-1].reg_max
    gated = GateCount()
    passed = PassedTeacher(trainer, teacher_map, say) if kd.until_passed and teacher_map is not None else None

    def loss(batch: dict, preds: Any = None) -> tuple[torch.Tensor, dict]:
        total, items = feature_loss(batch, preds)
        if not model.training or (passed is not None and passed.stopped):
            return total, items
        teacher = model._teacher_feats[head]
        if kd.gate and not gated.teacher_leads(model.student_model, batch, teacher, total[:-1].sum()):
            return total, items
        cls, box = kd.loss(model._student_feats[head], teacher, reg_max)
        extra = (cls + box) * batch["img"].shape[0]
        items["dis_loss"] = items["dis_loss"] + (cls + box).detach()
        return torch.cat([total[:-1], total[-1:] + extra]), items

    model.loss = loss
    if kd.gate:
        trainer.add_callback("on_train_epoch_end", gated.report)


class GateCount:
    """How many training batches of the current epoch the gate let distillation through."""

    def __init__(self) -> None:
        self.on = self.seen = 0

    def teacher_leads(self, student: Any, batch: dict, teacher_out: Any, student_loss: torch.Tensor) -> bool:
        """Whether the teacher's detection loss on ``batch`` (the student's criterion applied to the
        teacher's head outputs) is below the student's."""
        with torch.no_grad():
            teacher_loss = student.loss(batch, teacher_out)[0].sum()
        leads = bool(teacher_loss < student_loss.detach())
        self.seen += 1
        self.on += leads
        return leads

    def report(self, trainer: Any) -> None:
        from ultralytics.utils import LOGGER

        if self.seen:
            LOGGER.info(f"output distillation: on for {self.on} of {self.seen} batches (the teacher led)")
        self.on = self.seen = 0


class PassedTeacher:
    """Stops output distillation for good after the first epoch whose validation mAP50-95 reaches
    the teacher's.

    It reads the metrics of the trainer's own validation (wrapping ``trainer.validate``, which runs
    before the epoch's checkpoint is saved), so the epoch it stopped after is in the resume state
    (``ultralytics_resume.carried``) and a resumed run does not distil again.
    """

    KEY = "output_distillation_stopped_after"  # 0-based epoch

    def __init__(self, trainer: Any, teacher_map: float, say: Callable[[str], None] | None = None) -> None:
        self.trainer, self.teacher_map = trainer, float(teacher_map)
        self.say = say or _log
        validate = trainer.validate

        def validate_then_check() -> tuple[Any, Any]:
            metrics, fitness = validate()
            self.check(metrics)
            return metrics, fitness

        trainer.validate = validate_then_check

    @property
    def stopped(self) -> bool:
        return carried(self.trainer).get(self.KEY) is not None

    def check(self, metrics: dict[str, float] | None) -> None:
        """Stop after this epoch if its validation ``metrics`` reach the teacher's mAP50-95."""
        score = (metrics or {}).get("metrics/mAP50-95(B)")
        if self.stopped or score is None or float(score) < self.teacher_map:
            return
        epoch = int(self.trainer.epoch)
        carried(self.trainer)[self.KEY] = epoch
        self.say(
            f"  output distillation stops after epoch {epoch + 1}: the student's mAP50-95 {float(score):.4f} "
            f"reached the teacher's {self.teacher_map:.4f}"
        )


def _log(line: str) -> None:
    from ultralytics.utils import LOGGER

    LOGGER.info(line.strip())
