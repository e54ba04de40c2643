"""Output distillation's gate: a batch is distilled only while the teacher does better on it."""

import csv

import pytest

pytest.importorskip("ultralytics")

from edgeprune.models import load_model  # noqa: E402
from edgeprune.models.distill import OutputDistillation  # noqa: E402


def _dis_loss(student, teacher, data, out):
    """``train/dis_loss`` of one gated epoch of ``student`` distilled from ``teacher``."""
    student.train(
        data, epochs=1, imgsz=160, batch=4, out_dir=out, name="kd", workers=0, distill_model=str(teacher),
        dis=0.0, output_distill=OutputDistillation(gate=True),
    )  # fmt: skip
    with (out / "kd" / "results.csv").open() as f:
        return float(next(csv.DictReader(f, skipinitialspace=True))["train/dis_loss"])


def test_the_gate_distils_from_a_teacher_that_knows_better_and_not_from_one_that_does_not(
    demo_trained, tmp_path
):
    checkpoint, data = demo_trained
    trained = load_model(checkpoint)
    nc = trained.module.model[-1].nc
    untrained = load_model("yolov8n.yaml", nc=nc)
    blank = untrained.save(tmp_path / "untrained.pt")
    # a trained teacher leads an untrained student on every batch: the terms count
    assert _dis_loss(untrained, checkpoint, data, tmp_path / "leads") > 0
    # an untrained teacher never leads the trained student: nothing is distilled
    assert _dis_loss(trained, blank, data, tmp_path / "behind") == 0
