"""``edgeprune demo``: the whole flow, offline, on this machine.

Synthetic data -> a YOLOv8n baseline trained on it -> pruned and fine-tuned -> both exported to
ONNX -> both profiled with ONNX Runtime in one interleaved run -> verdict against a budget derived
from the baseline's own latency (so the demo means the same on any machine) -> table + report.json.
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
from edgeprune.profiling import collect_environment, judge, measure_interleaved
from edgeprune.pruning import prune_detector
from edgeprune.report import build_report, format_table, model_block, write_report
from edgeprune.runtimes import get_runtime
from edgeprune.targets import load_target


@dataclass(frozen=True)
class DemoSettings:
    model: str = "yolov8n.yaml"
    base_target: str = "cpu-ort-fp32"
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


class _Stages:
    """Numbered progress lines with the time each stage took."""

    def __init__(self, total: int, say: Callable[[str], None]):
        self.total, self.say, self.n, self.times = total, say, 0, {}

    def start(self, name: str) -> Callable[[], None]:
        self.n += 1
        self.say(f"[{self.n}/{self.total}] {name} ...")
        t0 = time.perf_counter()

        def done() -> None:
            self.times[name] = round(time.perf_counter() - t0, 1)
            self.say(f"      done in {self.times[name]:.1f} s")

        return done


def _baseline(settings: DemoSettings, data: Path, out: Path, say: Callable[[str], None]):
    """Train the baseline once; a later demo run with the same settings reuses it."""
    stamp = out / "baseline.json"
    ckpt = out / "baseline.pt"
    key = {
        k: v
        for k, v in asdict(settings).items()
        if k in ("model", "n_train", "n_val", "imgsz", "seed", "base_epochs", "batch")
    }
    if ckpt.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == key:
        say(f"      reusing {ckpt} (delete it to retrain)")
        return load_model(ckpt)
    detector = load_model(settings.model, nc=_nc(data))
    detector.train(
        data,
        epochs=settings.base_epochs,
        imgsz=settings.imgsz,
        batch=settings.batch,
        out_dir=out / "runs",
        name="baseline",
        progress=say,
        seed=settings.seed,
    )
    detector.save(ckpt, {"demo": key})
    stamp.write_text(json.dumps(key))
    return load_model(ckpt)


def _nc(data: Path) -> int:
    from edgeprune.api import dataset_classes

    return dataset_classes(data)


def run_demo(
    out: str | Path = "demo-out",
    *,
    quick: bool = False,
    settings: DemoSettings | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo and return the report (also written to ``OUT/report.json``)."""
    s = settings or (QUICK if quick else DemoSettings())
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    stages = _Stages(7, say)

    done = stages.start(f"synthetic dataset: {s.n_train} train / {s.n_val} val images at {s.imgsz} px")
    data = make_synthetic_dataset(out / "data", n_train=s.n_train, n_val=s.n_val, imgsz=s.imgsz, seed=s.seed)
    done()

    done = stages.start(f"baseline {s.model} trained for {s.base_epochs} epochs on it")
    baseline = _baseline(s, data, out, say)
    done()

    done = stages.start("baseline accuracy")
    base_metrics = baseline.evaluate(data, imgsz=s.imgsz, batch=s.batch)
    base_counts = baseline.count(s.imgsz)
    done()

    done = stages.start(
        f"prune {s.ratio:.0%} of every channel group ({s.importance}) and fine-tune {s.finetune_epochs} epochs"
    )
    threads = os.cpu_count() or 1
    target = load_target(s.base_target).with_overrides(imgsz=s.imgsz, threads=threads)
    pruned = load_model(out / "baseline.pt")
    plan = prune_detector(
        pruned, ratio=s.ratio, importance=s.importance, round_to=target.round_to, imgsz=s.imgsz
    )
    say(
        f"      params {plan.before['params']:,} -> {plan.after['params']:,}, MACs -{1 - plan.after['macs'] / plan.before['macs']:.0%}"
    )
    if s.finetune_epochs > 0:
        pruned.train(
            data,
            epochs=s.finetune_epochs,
            imgsz=s.imgsz,
            batch=s.batch,
            out_dir=out / "runs",
            name="finetune",
            progress=say,
            seed=s.seed,
        )
    pruned_ckpt = pruned.save(
        out / "pruned.pt", {"ratio": s.ratio, "importance": s.importance, "target": target.name}
    )
    done()

    done = stages.start("pruned accuracy")
    pruned_metrics = pruned.evaluate(data, imgsz=s.imgsz, batch=s.batch)
    done()

    done = stages.start(f"export both to ONNX ({target.runtime} {target.precision}) with parity checks")
    runtime = get_runtime(target.runtime)
    exports = {}
    for name, det in (("baseline", baseline), ("pruned", pruned)):
        exports[name] = runtime.export(
            det.inference_module().eval(), det.example_input(s.imgsz), out, target=target, stem=name
        )
        say(
            f"      {name}: {exports[name].artifact.name}, max abs error {exports[name].parity['max_abs_err']:.2g}"
        )
    done()

    done = stages.start(
        f"profile both with {runtime.environment()['runtime']}, {threads} threads, interleaved rounds"
    )
    sessions = {name: runtime.load(e.artifact, threads=threads) for name, e in exports.items()}
    inputs = {name: sess.random_inputs() for name, sess in sessions.items()}
    p = target.profiling
    stats = measure_interleaved(
        {name: (lambda sess=sess, x=inputs[name]: sess(*x)) for name, sess in sessions.items()},
        rounds=s.profile_rounds,
        warmup=p.warmup,
        iterations=p.iterations // s.profile_rounds or 1,
        min_time_s=p.min_time_s / s.profile_rounds,
    )
    budget_ms = round(s.budget_fraction * stats["baseline"].get(target.budget.percentile), 3)
    target = target.with_overrides(name=f"{s.base_target}-demo", budget={"latency_ms": budget_ms})
    verdict = judge(stats["pruned"], target.budget.latency_ms, target.budget.percentile)
    done()

    rows = [
        [
            "baseline",
            base_counts["params"],
            base_counts["macs"],
            base_metrics["map50_95"],
            stats["baseline"].p50,
            "-",
        ],
        [
            f"pruned {s.ratio:.0%}",
            plan.after["params"],
            plan.after["macs"],
            pruned_metrics["map50_95"],
            stats["pruned"].p50,
            "PASS" if verdict.passed else "FAIL",
        ],
    ]
    table = format_table(["model", "params", "MACs", "mAP50-95", "p50 ms", "budget"], rows)
    report = build_report(
        target=target,
        baseline=model_block(
            counts=base_counts,
            latency=stats["baseline"],
            metrics=base_metrics,
            artifact=exports["baseline"].artifact,
            checkpoint=str(out / "baseline.pt"),
            parity=exports["baseline"].parity,
        ),
        result=model_block(
            counts=plan.after,
            latency=stats["pruned"],
            metrics=pruned_metrics,
            artifact=exports["pruned"].artifact,
            checkpoint=str(pruned_ckpt),
            parity=exports["pruned"].parity,
        ),
        verdict=verdict,
        environment=collect_environment(runtime.environment(), threads),
        demo={
            **asdict(s),
            "budget_rule": f"{s.budget_fraction:.0%} of the baseline's measured {target.budget.percentile}",
            "stage_seconds": stages.times,
            "wall_seconds": round(time.perf_counter() - wall, 1),
            "data": str(data),
        },
        pruning=plan.to_dict(),
    )
    path = write_report(report, out / "report.json")
    say("")
    say(table)
    say("")
    say(
        f"budget: {budget_ms:.2f} ms {target.budget.percentile} = {s.budget_fraction:.0%} of the baseline's; {verdict.sentence()}"
    )
    say(f"speed-up {stats['baseline'].p50 / stats['pruned'].p50:.2f}x at p50; report: {path}")
    say(f"demo wall time: {report['demo']['wall_seconds']:.0f} s")
    return report
