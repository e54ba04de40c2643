"""Nothing lost to a kill: a writer SIGKILLed at random moments leaves the file readable, holding the
last version it finished or the one it was writing, never half of one (``edgeprune.files``)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WRITER = Path(__file__).with_name("kill_writer.py")


def kill_at_random(kind: str, path: Path, kills: int, seed: int, max_delay_s: float) -> list[int]:
    """SIGKILL a fresh writer ``kills`` times; returns the version found after each kill, having
    checked that it is the writer's last finished version or the next one."""
    rng = random.Random(seed)
    found = []
    for _ in range(kills):
        writer = subprocess.Popen(
            [sys.executable, str(WRITER), kind, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, max_delay_s))
        os.kill(writer.pid, signal.SIGKILL)
        done = [int(line) for line in writer.stdout.read().split()]
        writer.wait()
        version = read_version(kind, path)
        last = done[-1] if done else None
        if last is None:  # killed before its first write finished: the previous file, if any, is intact
            assert version is None or version >= 1
        else:
            assert version in (last, last + 1), (version, last)
        found.append(version)
    return found


def read_version(kind: str, path: Path) -> int | None:
    if not path.exists():
        return None
    if kind == "json":
        return json.loads(path.read_text())["version"]
    from edgeprune.models.safe_load import safe_torch_load

    return safe_torch_load(path)["version"]


def test_json_survives_sigkill(tmp_path):
    found = kill_at_random("json", tmp_path / "report.json", kills=30, seed=0, max_delay_s=0.3)
    assert sum(v is not None for v in found) >= 20  # most kills landed after writes had begun


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_checkpoint_survives_sigkill(tmp_path):
    pytest.importorskip("torch")
    found = kill_at_random("checkpoint", tmp_path / "last.pt", kills=6, seed=1, max_delay_s=1.5)
    assert any(v is not None for v in found)


def test_a_search_killed_while_fine_tuning_resumes_at_its_last_finished_epoch(tmp_path, tiny_data):
    """A real budget search, SIGKILLed in its fine-tuning after epoch 2 of 3: ``--resume`` does not
    probe or prune again and trains epoch 3 alone."""
    from conftest import run_cli

    target = tmp_path / "t.yaml"
    target.write_text(
        "name: t\ndescription: test\ndevice: {kind: x86-cpu, name: box}\nruntime: onnxruntime\n"
        "precision: fp32\nimgsz: 64\nthreads: 1\nround_to: 8\nbudget: {latency_ms: 1000, percentile: p50}\n"
        "profiling: {warmup: 1, warmup_s: 0, iterations: 5, min_time_s: 0}\n"
    )
    out = tmp_path / "out"
    args = ["prune", "yolov8n.yaml", "-t", str(target), "--speedup", "1.3", "--steps", "1", "--data",
            str(tiny_data), "--epochs", "3", "--batch", "8", "--out", str(out)]  # fmt: skip
    run = subprocess.Popen(
        [sys.executable, "-m", "edgeprune.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    seen = []
    for line in run.stdout:
        seen.append(line)
        if "epoch 2/3" in line:  # printed after the epoch's checkpoints were written
            os.kill(run.pid, signal.SIGKILL)
            break
    run.wait(timeout=60)
    assert run.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    pending = json.loads((out / "search" / "state.json").read_text())["pending"]
    k = pending["record"]["step"]  # the kept step (1, or 2 when a check on its own asked for one more)
    assert pending["last"] and pending["epochs"] == 3 and Path(pending["model"]).is_file()
    r = run_cli(*args, "--resume", timeout=600)
    assert r.returncode in (0, 3), r.stderr[-3000:]
    assert f"resuming in step {k}" in r.stdout and "fine-tuning resumes at epoch 3/3" in r.stdout
    assert "probe" not in r.stdout and "epoch 1/3" not in r.stdout and "epoch 3/3" in r.stdout
    report = json.loads((out / "prune.json").read_text())
    assert [s["step"] for s in report["search"]["steps"]] == list(range(1, k + 1))
    assert (out / "pruned.onnx").is_file()


def test_a_distilled_fine_tuning_resumes_with_its_projector_and_optimizer(tmp_path, tiny_data, monkeypatch):
    """Output + feature distillation (``both``) stopped after its first epoch resumes at the second:
    the EMA, optimizer and projector come back, the teacher is rebuilt from its file."""
    import torch

    from edgeprune.api import FINETUNE_RECIPE
    from edgeprune.models import load_model, ultralytics_resume
    from edgeprune.models.distill import trainer_overrides

    start = load_model("yolov8n.yaml", nc=6).save(tmp_path / "start.pt")
    teacher = load_model("yolov8n.yaml", nc=6).save(tmp_path / "teacher.pt")
    write = ultralytics_resume._write_state

    def write_then_stop(trainer, path):
        write(trainer, path)
        raise KeyboardInterrupt  # as a kill right after epoch 1's state

    monkeypatch.setattr(ultralytics_resume, "_write_state", write_then_stop)
    kw = dict(epochs=3, imgsz=64, batch=8, out_dir=tmp_path / "runs", name="kd", **FINETUNE_RECIPE,
              **trainer_overrides("both", teacher))  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        load_model(start).train(tiny_data, **kw)
    monkeypatch.setattr(ultralytics_resume, "_write_state", write)
    saved = torch.load(tmp_path / "runs" / "kd" / ultralytics_resume.RESUME_FILE, weights_only=True)
    assert saved["epoch"] == 0 and any(k.startswith("projector.") for k in saved["ema"])
    lines = []
    det = load_model(start)
    det.train(tiny_data, progress=lines.append, resume=True, **kw)
    assert lines[0].startswith("  fine-tuning resumes at epoch 2/3")
    assert [line.split()[1] for line in lines[1:] if line.split()[0] == "epoch"] == ["2/3", "3/3"]
    # a state of another architecture is not resumed: that run starts over
    other = load_model("yolo11n.yaml", nc=6)
    state, why = ultralytics_resume.read_state(tmp_path / "runs" / "kd", other.module)
    assert state is None and "another architecture" in why


def test_a_ratio_prune_resumes_its_fine_tuning(tmp_path, tiny_data, monkeypatch):
    from edgeprune.api import prune
    from edgeprune.models import ultralytics_resume

    write = ultralytics_resume._write_state

    def write_then_stop(trainer, path):
        write(trainer, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(ultralytics_resume, "_write_state", write_then_stop)
    kw = dict(ratio=0.3, data=tiny_data, epochs=2, imgsz=64, batch=8, out=tmp_path / "out", evaluate=False)
    with pytest.raises(KeyboardInterrupt):
        prune("yolov8n.yaml", "cpu-ort-fp32", **kw)
    monkeypatch.setattr(ultralytics_resume, "_write_state", write)
    lines = []
    outcome = prune(
        "yolov8n.yaml", "cpu-ort-fp32", resume=True, train_overrides={"progress": lines.append}, **kw
    )
    assert lines[0].startswith("  fine-tuning resumes at epoch 2/2") and len(lines) == 2
    assert outcome.checkpoint.is_file()
