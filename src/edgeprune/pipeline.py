"""The whole flow for one model and one target: prune, fine-tune, export, profile, judge, report.

The baseline (unpruned) model goes through the same export and profiling as the pruned one, in
one interleaved timing run, so the report's speed-up is a ratio measured under the same load.
``edgeprune run RECIPE.yaml`` and ``edgeprune demo`` are both this function.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.exporting import export_detector
from edgeprune.models import Detector, load_model
from edgeprune.profiling import collect_environment, judge, measure_interleaved
from edgeprune.pruning.options import FINETUNE_BATCH, PruneConfig
from edgeprune.report import build_report, format_table, model_block, write_report
from edgeprune.runtimes import get_runtime
from edgeprune.targets import Target, load_target


@dataclass(frozen=True)
class PipelineSpec:
    """What to do. ``budget_fraction`` replaces the target's budget by that fraction of the
    baseline's measured latency (the demo uses it, so its verdict means the same on any machine)."""

    model: Any
    target: Any
    data: str | Path | None = None
    imgsz: int | None = None
    threads: int | None = None
    prune: PruneConfig = field(default_factory=lambda: PruneConfig(ratio=0.5))  # round_to: the target's
    epochs: int = 0
    batch: int = FINETUNE_BATCH
    seed: int = 0
    budget_fraction: float | None = None
    profile_rounds: int = 3
    out: str | Path = "edgeprune-out"
    calib: str | Path | None = (
        None  # INT8 calibration images (folder or data.yaml); default: data's train split
    )
    train_options: dict[str, Any] | None = None  # Ultralytics training overrides for fine-tuning


class Stages:
    """Numbered progress lines, with the time each stage took."""

    def __init__(self, total: int, say: Callable[[str], None]):
        self.total, self.say, self.n, self.seconds = total, say, 0, {}

    def start(self, name: str) -> Callable[[], None]:
        self.n += 1
        self.say(f"[{self.n}/{self.total}] {name} ...")
        t0 = time.perf_counter()

        def done() -> None:
            self.seconds[name] = round(time.perf_counter() - t0, 1)
            self.say(f"      done in {self.seconds[name]:.1f} s")

        return done


def stage_count(spec: PipelineSpec) -> int:
    """How many progress stages ``run_pipeline`` shows (accuracy is measured only with data)."""
    return 5 if spec.data is not None else 3


def _target(spec: PipelineSpec) -> Target:
    target = load_target(spec.target)
    changes = {"imgsz": spec.imgsz, "threads": spec.threads}
    changes = {k: v for k, v in changes.items() if v is not None}
    return target.with_overrides(**changes) if changes else target


def run_pipeline(
    spec: PipelineSpec,
    *,
    say: Callable[[str], None] = print,
    stages: Stages | None = None,
    extra_report: dict[str, Any] | None = None,
    started_at: float | None = None,
) -> dict[str, Any]:
    """Run the flow and return the report (also written to ``OUT/report.json``).

    Args:
        spec: what to run.
        say: where progress lines go.
        stages: a progress counter already used by earlier stages (the demo's data and training).
        extra_report: more keys for report.json.
        started_at: ``time.perf_counter()`` when the user's command started, for the wall time.
    """
    from edgeprune.api import dataset_classes, prune_and_finetune

    wall = started_at if started_at is not None else time.perf_counter()
    out = Path(spec.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    target = _target(spec)
    runtime = get_runtime(target.runtime)  # fail before any work if the runtime is missing
    stages = stages or Stages(stage_count(spec), say)
    imgsz = target.imgsz

    baseline: Detector = load_model(spec.model, nc=dataset_classes(spec.data) if spec.data else None)
    base_metrics: dict[str, float] = {}
    if spec.data is not None:
        done = stages.start("baseline accuracy")
        base_metrics = baseline.evaluate(spec.data, imgsz=imgsz, batch=spec.batch)
        done()

    config = spec.prune.with_changes(round_to=target.round_to)
    config.check_data(spec.data)
    tune = f" and fine-tune {spec.epochs} epochs" if spec.epochs else ""
    done = stages.start(f"prune {config.describe()}{tune}")
    pruned = baseline.clone()
    plan, pruned_ckpt = prune_and_finetune(
        pruned, target, config, data=spec.data, epochs=spec.epochs, batch=spec.batch, out=out,
        progress=say, seed=spec.seed, name="finetune", **(spec.train_options or {}),
    )  # fmt: skip
    say(
        f"      params {plan.before['params']:,} -> {plan.after['params']:,}, "
        f"MACs -{1 - plan.after['macs'] / plan.before['macs']:.0%}"
    )
    done()

    metrics: dict[str, float] = {}
    if spec.data is not None:
        done = stages.start("pruned accuracy")
        metrics = pruned.evaluate(spec.data, imgsz=imgsz, batch=spec.batch)
        done()

    done = stages.start(f"export both to {target.runtime} {target.precision}, parity checked against PyTorch")
    exports = {}
    for name, det in (("baseline", baseline), ("pruned", pruned)):
        exports[name] = export_detector(det, target, out, name, calib=spec.calib or spec.data)
        e = exports[name]
        say(
            f"      {e.artifact.name}: {e.size_mb:.2f} MB, max abs error {e.parity.get('max_abs_err', float('nan')):.2g}"
        )
    done()

    threads = target.threads
    done = stages.start(
        f"profile both with {runtime.environment()['runtime']}, {_threads_text(threads)}, "
        f"{spec.profile_rounds} interleaved rounds"
    )
    sessions = {name: runtime.load(e.artifact, threads=threads) for name, e in exports.items()}
    calls = {name: session.runner() for name, session in sessions.items()}
    p, rounds = target.profiling, max(1, spec.profile_rounds)
    stats = measure_interleaved(
        calls,
        rounds=rounds,
        warmup=p.warmup,
        warmup_s=p.warmup_s,
        iterations=max(1, p.iterations // rounds),
        min_time_s=p.min_time_s / rounds,
    )
    if spec.budget_fraction is not None:
        derived = round(spec.budget_fraction * stats["baseline"].get(target.budget.percentile), 3)
        target = target.with_overrides(name=f"{target.name}-derived", budget={"latency_ms": derived})
    verdict = judge(stats["pruned"], target.budget.latency_ms, target.budget.percentile)
    done()

    rows = [
        ["baseline", plan.before["params"], plan.before["macs"], base_metrics.get("map50_95"), stats["baseline"].p50, "-"],
        [
            f"pruned {config.ratio:.0%}", plan.after["params"], plan.after["macs"], metrics.get("map50_95"),
            stats["pruned"].p50, "PASS" if verdict.passed else "FAIL",
        ],
    ]  # fmt: skip
    budget_rule = (
        f"{spec.budget_fraction:.0%} of the baseline's measured {target.budget.percentile}"
        if spec.budget_fraction is not None
        else "from the target"
    )
    report = build_report(
        target=target,
        baseline=model_block(
            counts=plan.before, latency=stats["baseline"], metrics=base_metrics,
            artifact=exports["baseline"].artifact, parity=exports["baseline"].parity, source=str(spec.model),
        ),
        result=model_block(
            counts=plan.after, latency=stats["pruned"], metrics=metrics, artifact=exports["pruned"].artifact,
            parity=exports["pruned"].parity, checkpoint=str(pruned_ckpt),
        ),
        verdict=verdict,
        environment=collect_environment(runtime.environment(), threads),
        speedup_p50=stats["baseline"].p50 / stats["pruned"].p50,
        budget_rule=budget_rule,
        pruning=plan.to_dict(),
        spec={k: str(v) if isinstance(v, Path) else v for k, v in asdict(spec).items() if k != "model"},
        stage_seconds=stages.seconds,
        **(extra_report or {}),
    )  # fmt: skip
    report["wall_seconds"] = round(time.perf_counter() - wall, 1)
    path = write_report(report, out / "report.json")
    say("")
    say(format_table(["model", "params", "MACs", "mAP50-95", "p50 ms", "budget"], rows))
    say("")
    say(f"budget: {target.budget.latency_ms:.2f} ms {target.budget.percentile} ({budget_rule})")
    say(verdict.sentence())
    say(f"speed-up {report['speedup_p50']:.2f}x at p50; report: {path}")
    return report


def _threads_text(threads: int | None) -> str:
    if threads is None:
        return "the runtime's default threads"
    return "1 thread" if threads == 1 else f"{threads} threads"
