"""``edgeprune demo``: the whole flow, offline, on this machine.

Synthetic data -> a YOLOv8n baseline trained on it -> the pipeline (prune, fine-tune, export
both to ONNX, profile both in one interleaved run) -> a verdict against a budget derived from
the baseline's own measured latency, so the demo means the same on any machine.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeprune.data import make_synthetic_dataset
from edgeprune.models import load_model
from edgeprune.pipeline import PipelineSpec, Stages, run_pipeline, stage_count


@dataclass(frozen=True)
class DemoSettings:
    model: str = "yolov8n.yaml"
    target: str = "cpu-ort-fp32"
    n_train: int = 400
    n_val: int = 100
    imgsz: int = 160
    seed: int = 0
    base_epochs: int = 25
    finetune_epochs: int = 10
    batch: int = 16
    ratio: float = 0.5
    importance: str = "l2"
    budget_fraction: float = 0.7  # budget = this fraction of the baseline's measured latency
    profile_rounds: int = 3


QUICK = DemoSettings(
    n_train=24, n_val=8, imgsz=64, base_epochs=1, finetune_epochs=1, batch=8, profile_rounds=1
)

_BASELINE_KEYS = ("model", "n_train", "n_val", "imgsz", "seed", "base_epochs", "batch")


def train_baseline(s: DemoSettings, data: Path, out: Path, say: Callable[[str], None] = print) -> Path:
    """Train the baseline once; a later run with the same settings reuses ``OUT/baseline.pt``."""
    from edgeprune.api import dataset_classes

    ckpt, stamp = out / "baseline.pt", out / "baseline.json"
    key = {k: v for k, v in asdict(s).items() if k in _BASELINE_KEYS}
    if ckpt.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == key:
        say(f"      reusing {ckpt} (delete it to retrain)")
        return ckpt
    detector = load_model(s.model, nc=dataset_classes(data))
    detector.train(
        data, epochs=s.base_epochs, imgsz=s.imgsz, batch=s.batch, out_dir=out / "runs", name="baseline",
        progress=say, seed=s.seed,
    )  # fmt: skip
    detector.save(ckpt, {"demo": key})
    stamp.write_text(json.dumps(key))
    return ckpt


def run_demo(
    out: str | Path = "demo-out",
    *,
    quick: bool = False,
    settings: DemoSettings | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo and return the report (also written to ``OUT/report.json``)."""
    started = time.perf_counter()
    s = settings or (QUICK if quick else DemoSettings())
    out = Path(out).resolve()
    spec = PipelineSpec(
        model=out / "baseline.pt",
        target=s.target,
        data=out / "data" / "data.yaml",
        imgsz=s.imgsz,
        threads=os.cpu_count() or 1,  # the target's thread count is for its device; use this machine's cores
        ratio=s.ratio,
        importance=s.importance,
        epochs=s.finetune_epochs,
        batch=s.batch,
        seed=s.seed,
        budget_fraction=s.budget_fraction,
        profile_rounds=s.profile_rounds,
        out=out,
    )
    stages = Stages(2 + stage_count(spec), say)

    done = stages.start(f"synthetic dataset: {s.n_train} train / {s.n_val} val images at {s.imgsz} px")
    make_synthetic_dataset(out / "data", n_train=s.n_train, n_val=s.n_val, imgsz=s.imgsz, seed=s.seed)
    done()

    done = stages.start(f"baseline {s.model} trained from scratch for {s.base_epochs} epochs")
    train_baseline(s, Path(spec.data), out, say)
    done()

    report = run_pipeline(spec, say=say, stages=stages, extra_report={"demo": asdict(s)}, started_at=started)
    say(f"demo wall time: {report['wall_seconds']:.0f} s")
    return report
