"""The whole flow for one model and one target: prune, fine-tune, export, profile, judge, report.

The baseline (unpruned) model goes through the same export and profiling as the pruned one, in
one interleaved timing run, so the report's speed-up is a ratio measured under the same load.
``edgeprune run RECIPE.yaml`` and ``edgeprune demo`` are both this function.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeprune.exporting import export_detector
from edgeprune.files import check_output_folder, output_folder
from edgeprune.models import Detector, load_model
from edgeprune.models.detections import describe_collapse
from edgeprune.profiling import collect_environment, judge, measure_interleaved
from edgeprune.profiling.trust import timing_warnings, watch_cpu
from edgeprune.pruning.options import FINETUNE_BATCH, PruneConfig, SearchConfig
from edgeprune.report import build_report, format_table, model_block, write_report
from edgeprune.runtimes import get_runtime
from edgeprune.runtimes.base import ExportResult
from edgeprune.targets import Target, load_target


@dataclass(frozen=True)
class PipelineSpec:
    """What to do. ``prune`` removes a fixed ratio; ``search``, when given, searches the widths that
    meet its budget instead (``prune_to_budget``, ``epochs`` of final fine-tuning).
    ``budget_fraction`` replaces the target's budget by that fraction of the baseline's measured
    latency (the demo uses it, so its verdict means the same on any machine)."""

    model: Any
    target: Any
    data: str | Path | None = None
    imgsz: int | None = None
    threads: int | None = None
    prune: PruneConfig = field(default_factory=lambda: PruneConfig(ratio=0.5))  # round_to: the target's
    search: SearchConfig | None = None  # instead of ``prune``: a budget search (fine-tuned ``epochs``)
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
    max_drop: float | None = None  # INT8: the pruned artifact may lose at most this many mAP50-95 points


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
    """How many progress stages ``run_pipeline`` shows (accuracy is measured only with data, by the
    search itself when there is one)."""
    return 5 if spec.data is not None and spec.search is None else 3


@dataclass
class _Pruned:
    """What the prune stage made: the model, its checkpoint, sizes and accuracy before and after."""

    detector: Detector
    checkpoint: Path
    before: dict[str, int]
    after: dict[str, int]
    label: str  # the pruned model's row in the table
    record: dict[str, Any]  # report.json's ``pruning`` (a fixed ratio) or ``search`` (a budget search)
    base_metrics: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    export: ExportResult | None = None  # the pruned model's artifact, when the prune stage made it


def _prune_by_ratio(
    spec: PipelineSpec,
    baseline: Detector,
    target: Target,
    out: Path,
    stages: Stages,
    say: Callable[[str], None],
) -> _Pruned:
    """Prune ``spec.prune``'s ratio and fine-tune ``spec.epochs``, with accuracy before and after."""
    from edgeprune.api import prune_and_finetune

    base_metrics: dict[str, float] = {}
    if spec.data is not None:
        done = stages.start("baseline accuracy")
        base_metrics = baseline.evaluate(spec.data, imgsz=target.imgsz, batch=spec.batch, breakdown=True)
        done()
    config = spec.prune.with_changes(round_to=target.round_to)
    config.check_data(spec.data)
    tune = f" and fine-tune {spec.epochs} epochs" if spec.epochs else ""
    done = stages.start(f"prune {config.describe()}{tune}")
    pruned = baseline.clone()
    plan, ckpt = prune_and_finetune(
        pruned, target, config, data=spec.data, epochs=spec.epochs, batch=spec.batch, out=out,
        progress=say, seed=spec.seed, name="finetune", **(spec.train_options or {}),
    )  # fmt: skip
    say(
        f"      params {plan.before['params']:,} -> {plan.after['params']:,}, MACs -{1 - plan.after['macs'] / plan.before['macs']:.0%}"
    )
    done()
    metrics: dict[str, float] = {}
    if spec.data is not None:
        done = stages.start("pruned accuracy")
        metrics = pruned.evaluate(spec.data, imgsz=target.imgsz, batch=spec.batch, breakdown=True)
        done()
    label = f"pruned {config.ratio:.0%}"
    return _Pruned(
        pruned, ckpt, plan.before, plan.after, label, {"pruning": plan.to_dict()}, base_metrics, metrics
    )


def _prune_to_budget(
    spec: PipelineSpec,
    baseline: Detector,
    target: Target,
    out: Path,
    stages: Stages,
    say: Callable[[str], None],
) -> _Pruned:
    """The budget search of ``spec.search``, fine-tuned ``spec.epochs`` (it measures accuracy itself)."""
    from edgeprune.api import prune_to_budget

    config = replace(spec.search, final_epochs=spec.epochs, percentile=target.budget.percentile)
    goal = f"{config.speedup:g}x faster than the baseline" if config.speedup else f"{config.budget_ms:g} ms"
    done = stages.start(
        f"budget search to {goal}, measured on {target.runtime}, fine-tune {spec.epochs} epochs"
    )
    outcome = prune_to_budget(
        baseline, target, config, data=spec.data, calib=spec.calib, batch=spec.batch, out=out,
        train_overrides={"seed": spec.seed, **(spec.train_options or {})}, say=lambda line: say(f"      {line}"),
    )  # fmt: skip
    done()
    b = outcome.baseline
    before = {"params": b["params"], "macs": b["macs"]}
    label = f"pruned {config.speedup:g}x" if config.speedup else "pruned to budget"
    base_metrics = outcome.report["baseline"]["metrics"]
    return _Pruned(
        outcome.detector, outcome.checkpoint, before, outcome.counts, label, {"search": outcome.search_block()},
        base_metrics, outcome.metrics, outcome.export,
    )  # fmt: skip


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
    from edgeprune.api import dataset_classes

    wall = started_at if started_at is not None else time.perf_counter()
    out = check_output_folder(Path(spec.out).resolve(), "out")
    target = _target(spec)
    runtime = get_runtime(target.runtime)  # fail before any work if the runtime is missing
    _check_spec(spec, target)
    stages = stages or Stages(stage_count(spec), say)

    baseline: Detector = load_model(spec.model, nc=dataset_classes(spec.data) if spec.data else None)
    with output_folder(out, "out") as out:
        prune = _prune_to_budget if spec.search is not None else _prune_by_ratio
        made = prune(spec, baseline, target, out, stages, say)
        pruned, base_metrics, metrics = made.detector, made.base_metrics, made.metrics

        done = stages.start(
            f"export both to {target.runtime} {target.precision}, parity checked against PyTorch"
        )
        exports = {}
        calib = spec.calib or spec.data
        if spec.max_drop is not None:  # the pruned model's INT8 held to a measured accuracy
            exports["pruned"] = _controlled_export(spec, pruned, target, out, calib, say)
        for name, det in (("baseline", baseline), ("pruned", pruned)):
            made_here = (
                made.export if name == "pruned" else None
            )  # the search exported it as the target runs it
            exports[name] = (
                exports.get(name) or made_here or export_detector(det, target, out, name, calib=calib)
            )
            e = exports[name]
            say(
                f"      {e.artifact.name}: {e.size_mb:.2f} MB, max abs error {e.parity.get('max_abs_err', float('nan')):.2g}"
            )
            collapse = describe_collapse(e.parity)
            if collapse:
                say(f"      warning: {e.artifact.name}: {collapse}")
        done()

        threads = target.threads
        done = stages.start(
            f"profile both with {runtime.environment()['runtime']}, {_threads_text(threads)}, "
            f"{spec.profile_rounds} interleaved rounds"
        )
        sessions = {name: runtime.load(e.artifact, threads=threads) for name, e in exports.items()}
        calls = {name: session.runner() for name, session in sessions.items()}
        p, rounds = target.profiling, max(1, spec.profile_rounds)
        with watch_cpu() as watch:
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

        base_map, map_ = base_metrics.get("map50_95"), metrics.get("map50_95")
        kept = f"{map_ / base_map:.1%}" if base_map and map_ is not None else "-"
        rows = [
            ["baseline", made.before["params"], made.before["macs"], base_map, "-", stats["baseline"].p50, "-"],
            [
                made.label, made.after["params"], made.after["macs"], map_, kept, stats["pruned"].p50,
                "PASS" if verdict.passed else "FAIL",
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
                counts=made.before, latency=stats["baseline"], metrics=base_metrics,
                artifact=exports["baseline"].artifact, parity=exports["baseline"].parity, source=str(spec.model),
            ),
            result=model_block(
                counts=made.after, latency=stats["pruned"], metrics=metrics, artifact=exports["pruned"].artifact,
                parity=exports["pruned"].parity, checkpoint=str(made.checkpoint),
            ),
            verdict=verdict,
            environment=collect_environment(runtime.environment(), threads),
            speedup_p50=stats["baseline"].p50 / stats["pruned"].p50,
            map_kept=map_ / base_map if base_map and map_ is not None else None,
            budget_rule=budget_rule,
            **made.record,
            spec={k: _plain(v) for k, v in asdict(spec).items() if k != "model"},
            stage_seconds=stages.seconds,
            **_int8_summary(spec, baseline, pruned, target, exports, out),
            **({"accuracy_control": c} if (c := exports["pruned"].details.get("accuracy_control")) else {}),
            **(extra_report or {}),
        )  # fmt: skip
        report["wall_seconds"] = round(time.perf_counter() - wall, 1)
        warnings = timing_warnings(stats["pruned"], threads, watch)
        if warnings:
            report.setdefault("warnings", []).extend(warnings)
        path = write_report(report, out / "report.json", html=True)
        for warning in warnings:
            say(f"warning: {warning}")
        say("")
        say(format_table(["model", "params", "MACs", "mAP50-95", "mAP kept", "p50 ms", "budget"], rows))
        say("")
        say(f"budget: {target.budget.latency_ms:.2f} ms {target.budget.percentile} ({budget_rule})")
        say(verdict.sentence())
        say(f"speed-up {report['speedup_p50']:.2f}x at p50; report: {path}")
        summary = report.get("int8_vs_fp32_baseline")
        if summary:
            kept = f"{summary['map_kept']:.1%}" if summary["map_kept"] is not None else "-"
            say(
                f"INT8 pruned artifact: {summary['int8_pruned_mb']:.2f} MB, {summary['size_fraction']:.1%} of the FP32 "
                f"baseline's {summary['fp32_baseline_mb']:.2f} MB; mAP50-95 {summary['int8_pruned_map50_95']:.4f}, "
                f"{kept} of the float baseline's"
            )
        return report


def _check_spec(spec: PipelineSpec, target: Target) -> None:
    """What the run cannot honour, refused before any work."""
    from edgeprune.errors import OptionError

    if target.budget.scope == "end_to_end":
        raise OptionError(
            f"target {target.name}'s budget is end to end; `edgeprune run` times the engine: give it a target "
            "whose budget scope is engine, then check with `edgeprune profile --end-to-end`"
        )
    if spec.max_drop is not None and target.precision != "int8":
        raise OptionError(f"`max_drop` controls INT8 accuracy; target {target.name} is {target.precision}")
    if spec.max_drop is not None and spec.data is None:
        raise OptionError("`max_drop` measures the artifact's mAP50-95: it needs `data`")


def _controlled_export(
    spec: PipelineSpec, pruned: Detector, target: Target, out: Path, calib: Any, say: Callable[[str], None]
) -> ExportResult:
    from edgeprune.accuracy_control import export_within_drop

    controlled = export_within_drop(
        pruned, target, out, "pruned", data=spec.data, max_drop=spec.max_drop, calib=calib,
        say=lambda line: say(f"      {line}"),
    )  # fmt: skip
    say(f"      {controlled.describe()}")
    return controlled.export


def _int8_summary(
    spec: PipelineSpec,
    baseline: Detector,
    pruned: Detector,
    target: Target,
    exports: dict[str, ExportResult],
    out: Path,
) -> dict[str, Any]:
    """For INT8 targets with data: the pruned INT8 artifact against the unpruned model in float,
    the deployment's two numbers: its size as a fraction of the FP32 baseline artifact's (exported
    here for it) and the artifact's mAP50-95 as a fraction of the float baseline's (both measured on
    the data's validation split, every image letterboxed as an artifact is fed)."""
    if target.precision != "int8" or spec.data is None or getattr(pruned, "task", "detect") != "detect":
        return {}  # artifact mAP is measured for detection models
    fp32 = export_detector(
        baseline, target.with_overrides(precision="fp32", calibration=None), out / "fp32", "baseline"
    )
    base_map = baseline.evaluate(spec.data, imgsz=target.imgsz, square=True)["map50_95"]
    got = _artifact_map(pruned, exports["pruned"], spec.data, target)
    return {
        "int8_vs_fp32_baseline": {
            "fp32_baseline_artifact": str(fp32.artifact), "fp32_baseline_mb": round(fp32.size_mb, 3),
            "int8_pruned_mb": round(exports["pruned"].size_mb, 3),
            "size_fraction": exports["pruned"].size_mb / fp32.size_mb,
            "fp32_baseline_map50_95": base_map, "int8_pruned_map50_95": got,
            "map_kept": got / base_map if base_map else None,
            "accuracy_control": exports["pruned"].details.get("accuracy_control"),
        }
    }  # fmt: skip


def _artifact_map(pruned: Detector, export: ExportResult, data: Any, target: Target) -> float:
    control = export.details.get("accuracy_control")
    if control:  # the accuracy control measured the step it exported
        return control["steps"][control["chosen_step"]]["map50_95"]
    return pruned.evaluate_artifact(export.artifact, data, imgsz=target.imgsz)["map50_95"]


def _plain(value: Any) -> Any:
    """A spec field as report.json holds it: paths as text, a target given as an object as its fields."""
    if isinstance(value, Target):
        return value.model_dump(mode="json")
    return str(value) if isinstance(value, Path) else value


def _threads_text(threads: int | None) -> str:
    if threads is None:
        return "the runtime's default threads"
    return "1 thread" if threads == 1 else f"{threads} threads"
