"""Output distillation's gate: a batch is distilled only while the teacher does better on it."""

import csv

import pytest
import torch

pytest.importorskip("ultralytics")

from edgeprune.models import load_model  # noqa: E402
from edgeprune.models.distill import OutputDistillation  # noqa: E402


def _dis_losses(student, teacher, data, out, kd, epochs=1, **kw):
    """``train/dis_loss`` per epoch of ``student`` distilled from ``teacher``."""
    student.train(
        data, epochs=epochs, imgsz=160, batch=4, out_dir=out, name="kd", workers=0, distill_model=str(teacher),
        dis=0.0, output_distill=kd, **kw,
    )  # fmt: skip
    with (out / "kd" / "results.csv").open() as f:
        return [float(row["train/dis_loss"]) for row in csv.DictReader(f, skipinitialspace=True)]


def _dis_loss(student, teacher, data, out):
    """``train/dis_loss`` of one gated epoch of ``student`` distilled from ``teacher``."""
    return _dis_losses(student, teacher, data, out, OutputDistillation(gate=True, until_passed=False))[0]


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


def test_a_teacher_of_another_size_teaches_the_search_and_one_of_other_classes_is_refused(
    tmp_path, tiny_data
):
    """``teacher``: distil from a checkpoint other than the model pruned (here a YOLOv8s teaching a
    pruned YOLOv8n); it must predict the same classes with the same head."""
    import torch

    from edgeprune.api import prune_to_budget, resolve_target
    from edgeprune.errors import EdgepruneError
    from edgeprune.pruning.options import SearchConfig

    assert SearchConfig(budget_ms=5, teacher="t.pt").distill is True  # a teacher is for distilling
    target = resolve_target("cpu-ort-fp32", imgsz=64).with_overrides(threads=1)
    student = load_model("yolov8n.yaml", nc=6)
    big = load_model("yolov8s.yaml", nc=6).save(tmp_path / "v8s.pt")
    meter = lambda det, name: 10.0 + det.count(64)["macs"] / 1e6  # noqa: E731 - latency linear in MACs
    prune_to_budget(
        student, target, budget_ms=meter(student, "") * 0.7, data=tiny_data, epochs=1, steps=1, teacher=str(big),
        batch=8, out=tmp_path / "out", meter=meter, say=lambda line: None,
    )  # fmt: skip
    saved = torch.load(tmp_path / "out" / "search" / "teacher.pt", weights_only=False)
    params = sum(p.numel() for p in saved["model"].parameters())
    assert params == sum(p.numel() for p in load_model(big).module.parameters())  # the YOLOv8s taught
    other = load_model("yolov8s.yaml", nc=3).save(tmp_path / "nc3.pt")
    with pytest.raises(EdgepruneError, match=r"teacher .*nc3.pt: its nc \(classes\) is 3, the model's is 6"):
        prune_to_budget(
            student, target, budget_ms=5, data=tiny_data, epochs=1, teacher=str(other), out=tmp_path / "o2",
            meter=meter, say=lambda line: None,
        )  # fmt: skip


def test_the_cli_refuses_a_teacher_for_a_fixed_ratio(tmp_path, tiny_data):
    from conftest import run_cli

    out = run_cli("prune", "yolov8n.yaml", "-t", "cpu-ort-fp32", "--ratio", "0.3", "--data", str(tiny_data), "--teacher", "t.pt",
                  "--out", str(tmp_path))  # fmt: skip
    assert out.returncode == 1 and "--distill and --teacher fine-tune a budget search's result" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_student_that_ends_above_its_teacher_is_told_why_distillation_may_cost():
    from edgeprune.api import _outgrown_teacher

    said = _outgrown_teacher({"map50_95": 0.3914}, {"map50_95": 0.4380}, None)
    assert "ends at mAP50-95 0.4380, above the model given (the teacher) at 0.3914" in said
    assert "--teacher" in said
    assert _outgrown_teacher({"map50_95": 0.4544}, {"map50_95": 0.4473}, "ft.pt") is None
    assert _outgrown_teacher({}, {"map50_95": 0.4}, None) is None  # no data: nothing to judge


def test_distillation_stops_for_good_once_the_students_validation_map_reaches_the_teachers(
    demo_trained, tmp_path, monkeypatch
):
    """``until_passed``: the trained student passes an untrained teacher (mAP50-95 0) at its first
    validation, so epoch 2 is not distilled; a resumed run remembers it. The per-batch gate is off
    here, so only the validation comparison can stop it."""
    from edgeprune.models import ultralytics_resume
    from edgeprune.models.distill import PassedTeacher

    checkpoint, data = demo_trained
    nc = load_model(checkpoint).module.model[-1].nc
    blank = load_model("yolov8n.yaml", nc=nc).save(tmp_path / "untrained.pt")
    said = []
    kept_on = _dis_losses(load_model(checkpoint), blank, data, tmp_path / "on", OutputDistillation(gate=False, until_passed=False), epochs=2)  # fmt: skip
    assert kept_on[0] > 0 and kept_on[1] > 0  # without the stop, the terms count in both epochs
    stopped = _dis_losses(
        load_model(checkpoint), blank, data, tmp_path / "stop", OutputDistillation(gate=False), epochs=2,
        progress=said.append,
    )  # fmt: skip
    assert stopped[0] > 0 and stopped[1] == 0
    assert any("output distillation stops after epoch 1: the student's mAP50-95" in line for line in said)
    assert any("reached the teacher's 0.0000" in line for line in said)

    write = ultralytics_resume._write_state

    def write_then_stop(trainer, path):
        write(trainer, path)
        raise KeyboardInterrupt  # as a kill right after epoch 1's state

    monkeypatch.setattr(ultralytics_resume, "_write_state", write_then_stop)
    kw = dict(kd=OutputDistillation(gate=False), epochs=2)
    with pytest.raises(KeyboardInterrupt):
        _dis_losses(load_model(checkpoint), blank, data, tmp_path / "resumed", **kw)
    monkeypatch.setattr(ultralytics_resume, "_write_state", write)
    saved = torch.load(tmp_path / "resumed" / "kd" / ultralytics_resume.RESUME_FILE, weights_only=True)
    assert saved["carried"] == {PassedTeacher.KEY: 0}
    resumed = _dis_losses(load_model(checkpoint), blank, data, tmp_path / "resumed", resume=True, **kw)
    assert resumed[-1] == 0  # epoch 2, after the resume, is not distilled either


def test_distillation_goes_on_while_the_student_is_below_its_teacher_and_stops_once_it_reaches_it():
    """The stop's comparison, epoch by epoch: below the teacher nothing changes, reaching it stops
    distillation after that epoch, and a later worse epoch does not restart it."""
    from types import SimpleNamespace

    from edgeprune.models.distill import PassedTeacher

    scores = iter([None, 0.40, 0.4118, 0.39])
    trainer = SimpleNamespace(epoch=0)
    trainer.validate = lambda: ({"metrics/mAP50-95(B)": s} if (s := next(scores)) is not None else {}, 0.0)
    said: list[str] = []
    passed = PassedTeacher(trainer, 0.4118, said.append)
    for epoch, stopped in enumerate([False, False, True, True]):
        trainer.epoch = epoch
        trainer.validate()
        assert passed.stopped is stopped, epoch
    assert said == [
        "  output distillation stops after epoch 3: the student's mAP50-95 0.4118 reached the teacher's 0.4118"
    ]
