"""``edgeprune demo``: the main job, offline, on this machine.

Synthetic data -> a YOLOv8n baseline trained on it -> the pipeline with a budget search (prune
until the model runs ``speedup`` times faster than the baseline, both measured side by side on
ONNX Runtime; fine-tune; export both; profile both in one interleaved run) -> a verdict against
the baseline's own measured latency / ``speedup``, so the demo means the same on any machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from edgeprune.data import make_synthetic_dataset
from edgeprune.models import Detector, load_model
from edgeprune.pipeline import PipelineSpec, Stages, run_pipeline, stage_count
from edgeprune.pruning.options import SearchConfig, search_importance
from edgeprune.targets import load_target


@dataclass(frozen=True)
class DemoSettings:
    model: str = "yolov8n.yaml"
    target: str = "cpu-ort-fp32"
    n_train: int = 400
    n_val: int = 100
    imgsz: int = 160
    seed: int = 0
    base_epochs: int = 120  # epochs of the shipped baseline (examples/train_demo_baseline.py)
    retrain_epochs: int = 25  # epochs when the demo trains its own baseline (--retrain)
    finetune_epochs: int = 40
    batch: int = 16
    speedup: float = 2.0  # the budget: the baseline's measured latency / this
    steps: int = 3  # of the budget search
    margin: float = 0.05  # the search aims this far under the budget: the verdict's timing is another run
    profile_rounds: int = 3
    # One intra-op thread: for a 1-4 ms model on a shared 2-vCPU machine, ONNX Runtime's thread
    # pool sync costs about what it saves and makes timings jumpy. Five interleaved runs here gave
    # pruned/baseline p50 ratios of 0.40-0.51 with 1 thread and 0.41-0.67 with 2.
    threads: int = 1
    profiling: dict[str, Any] | None = None  # timing overrides of the target's `profiling` section


# A smoke run of every stage. Timing is most of a demo's time (each search probe is timed in
# interleaved rounds against the baseline, the final check three times as `profile` does), so the
# quick run times in shorter windows: its verdict is noisier, which a smoke run can afford.
QUICK = DemoSettings(
    n_train=24, n_val=8, imgsz=64, retrain_epochs=1, finetune_epochs=1, batch=8, steps=1, profile_rounds=1,
    profiling={"warmup": 3, "warmup_s": 0.1, "iterations": 20, "min_time_s": 0.4},
)  # fmt: skip

# From scratch on a few hundred images, Ultralytics' automatic optimizer spends most of a short
# run warming up; AdamW at a higher rate with one warm-up epoch learns several times faster here.
BASELINE_TRAINING = {"optimizer": "AdamW", "lr0": 0.003, "warmup_epochs": 1}

BASELINE_ASSET = Path(__file__).resolve().parent / "assets" / "demo_baseline.pt"
_DATA_KEYS = ("model", "n_train", "n_val", "imgsz", "seed")


def _data_key(s: DemoSettings) -> dict[str, Any]:
    from edgeprune.data.synthetic import GENERATOR_VERSION

    return {**{k: getattr(s, k) for k in _DATA_KEYS}, "generator": GENERATOR_VERSION}


def train_baseline_from_scratch(
    s: DemoSettings, data: Path, out: Path, say: Callable[[str], None] = print
) -> Detector:
    """Train ``s.model`` from its config on the synthetic set for ``s.base_epochs`` epochs."""
    from edgeprune.api import dataset_classes

    detector = load_model(s.model, nc=dataset_classes(data))
    detector.train(
        data, epochs=s.base_epochs, imgsz=s.imgsz, batch=s.batch, out_dir=out / "runs", name="baseline",
        progress=say, seed=s.seed, **BASELINE_TRAINING,
    )  # fmt: skip
    return detector


def save_portable(detector: Detector, s: DemoSettings, metrics: dict[str, float], path: Path) -> Path:
    """Write config name + class names + fp16 weights: a file ``torch.load(weights_only=True)`` reads."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in detector.module.state_dict().items()}
    blob = {
        "config": s.model,
        "names": {int(k): str(v) for k, v in detector.module.names.items()},
        "state_dict": state,
        "data": _data_key(s),
        "epochs": s.base_epochs,
        "training": BASELINE_TRAINING,
        "metrics": metrics,
    }
    from edgeprune.files import atomic_path

    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


def load_portable(path: Path) -> tuple[Detector, dict[str, Any]]:
    """Rebuild the model from its config and load the shipped weights into it."""
    import torch

    blob = torch.load(path, map_location="cpu", weights_only=True)
    detector = load_model(blob["config"], nc=len(blob["names"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    detector.module.load_state_dict(state)
    detector.module.names = dict(blob["names"])
    return detector, blob


def obtain_baseline(
    s: DemoSettings, data: Path, out: Path, *, retrain: bool, say: Callable[[str], None] = print
) -> Path:
    """Write ``OUT/baseline.pt``: the shipped baseline if it was trained on this very data, else train one."""
    ckpt = out / "baseline.pt"
    if not retrain and BASELINE_ASSET.is_file():
        detector, blob = load_portable(BASELINE_ASSET)
        if blob["data"] == _data_key(s):
            say(
                f"      shipped baseline: {blob['epochs']} epochs by examples/train_demo_baseline.py "
                f"(mAP50-95 {blob['metrics'].get('map50_95', float('nan')):.3f} when trained)"
            )
            detector.save(ckpt, {"demo": blob["data"], "epochs": blob["epochs"]})
            return ckpt
        say("      the shipped baseline was trained on other data settings: training one here")
    s = replace(s, base_epochs=s.retrain_epochs)
    detector = train_baseline_from_scratch(s, data, out, say)
    detector.save(ckpt, {"demo": _data_key(s), "epochs": s.base_epochs})
    return ckpt


def run_demo(
    out: str | Path = "demo-out",
    *,
    quick: bool = False,
    retrain: bool = False,
    settings: DemoSettings | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo and return the report (also written to ``OUT/report.json``)."""
    started = time.perf_counter()
    s = settings or (QUICK if quick else DemoSettings())
    out = Path(out).resolve()
    data = out / "data" / "data.yaml"
    spec = PipelineSpec(
        model=out / "baseline.pt",
        target=load_target(s.target).with_overrides(profiling=s.profiling) if s.profiling else s.target,
        data=data,
        imgsz=s.imgsz,
        threads=s.threads,  # the target's thread count is for its device, not this machine
        search=SearchConfig(
            speedup=s.speedup, steps=s.steps, margin=s.margin, importance=search_importance(data)
        ),
        epochs=s.finetune_epochs,
        batch=s.batch,
        seed=s.seed,
        budget_fraction=1 / s.speedup,
        profile_rounds=s.profile_rounds,
        out=out,
    )
    stages = Stages(2 + stage_count(spec), say)

    done = stages.start(f"synthetic dataset: {s.n_train} train / {s.n_val} val images at {s.imgsz} px")
    make_synthetic_dataset(out / "data", n_train=s.n_train, n_val=s.n_val, imgsz=s.imgsz, seed=s.seed)
    done()

    done = stages.start(f"baseline {s.model} trained on it")
    obtain_baseline(s, Path(spec.data), out, retrain=retrain or quick, say=say)
    done()

    report = run_pipeline(spec, say=say, stages=stages, extra_report={"demo": asdict(s)}, started_at=started)
    say(f"demo wall time: {report['wall_seconds']:.0f} s")
    return report
