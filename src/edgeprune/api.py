"""The public verbs: prune, export, profile. The CLI is a thin layer over these."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgeprune.errors import EdgepruneError
from edgeprune.exporting import export_detector
from edgeprune.models import Detector, load_model
from edgeprune.profiling import LatencyStats, Verdict, collect_environment, judge, measure
from edgeprune.pruning import PruneConfig, PruneReport, prune_detector
from edgeprune.report import build_report, model_block, write_report
from edgeprune.runtimes import get_runtime
from edgeprune.runtimes.base import ExportResult
from edgeprune.targets import Target, load_target


def resolve_target(target: Target | str | Path, **overrides: Any) -> Target:
    """A Target from an object, a shipped name or a YAML path, with non-None overrides applied."""
    t = target if isinstance(target, Target) else load_target(target)
    changes = {k: v for k, v in overrides.items() if v is not None}
    return t.with_overrides(**changes) if changes else t


def dataset_classes(data: str | Path) -> int:
    """Number of classes declared by an Ultralytics data.yaml (read without Ultralytics)."""
    path = Path(data)
    if not path.is_file():
        raise EdgepruneError(f"dataset file not found: {data} (edgeprune never downloads datasets)")
    info = yaml.safe_load(path.read_text()) or {}
    if "nc" in info:
        return int(info["nc"])
    names = info.get("names")
    if names is None:
        raise EdgepruneError(f"{data}: neither 'nc' nor 'names' is set")
    return len(names)


def _load(model: Any, data: str | Path | None, trust_checkpoint: bool = False) -> Detector:
    nc = dataset_classes(data) if data is not None else None
    return load_model(model, nc=nc, trust_checkpoint=trust_checkpoint)


def _check_tuning(data: str | Path | None, epochs: int) -> None:
    if epochs > 0 and data is None:
        raise EdgepruneError("fine-tuning (epochs > 0) needs a dataset (--data DATA.yaml)")


def prune_and_finetune(
    detector: Detector,
    target: Target,
    config: PruneConfig,
    *,
    data: str | Path | None,
    epochs: int,
    batch: int,
    out: Path,
    **train_options: Any,
) -> tuple[PruneReport, Path]:
    """Prune ``detector`` in place as ``config`` says, fine-tune if asked, save OUT/pruned.pt.

    Fine-tuning runs (Ultralytics' own logs and weights) go under OUT/runs.

    ``train_options`` go to ``Detector.train`` (e.g. ``progress``, ``seed``, Ultralytics overrides).
    ``data`` also gives gradient-based criteria (``taylor``) their batches.
    """
    _check_tuning(data, epochs)
    report = prune_detector(detector, config, imgsz=target.imgsz, data=data)
    if epochs > 0:
        detector.train(
            data, epochs=epochs, imgsz=target.imgsz, batch=batch, out_dir=out / "runs", **train_options
        )
    meta = {**config.to_dict(), "target": target.name, "epochs": epochs}
    return report, detector.save(out / "pruned.pt", meta)


@dataclass
class PruneOutcome:
    detector: Detector
    report: PruneReport
    checkpoint: Path | None = None
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    report_path: Path | None = None


def prune(
    model: Any,
    target: Target | str | Path,
    *,
    ratio: float,
    importance: str = "l2",
    allocation: str = "uniform",
    max_layer_ratio: float = 0.8,
    data: str | Path | None = None,
    epochs: int = 0,
    imgsz: int | None = None,
    batch: int = 16,
    out: str | Path = "edgeprune-out",
    dry_run: bool = False,
    evaluate: bool = True,
    train_overrides: dict[str, Any] | None = None,
    trust_checkpoint: bool = False,
) -> PruneOutcome:
    """Prune ``model`` by ``ratio`` with the target's channel alignment, optionally fine-tune.

    ``allocation`` is ``uniform`` (``ratio`` of every group) or ``global`` (``ratio`` of all channels,
    least important first, at most ``max_layer_ratio`` of any group). ``importance="taylor"``
    needs ``data``: a few batches of its train split give the gradients.

    Writes ``OUT/pruned.pt`` (loadable by ``ultralytics.YOLO``) and ``OUT/prune.json``. With
    ``data``, mAP is measured before and after; ``epochs > 0`` fine-tunes on ``data``.
    A checkpoint is unpickled through an allow-list (``UnsafeCheckpointError`` otherwise);
    ``trust_checkpoint=True`` loads it with plain pickle, which runs whatever code it holds.
    """
    t = resolve_target(target, imgsz=imgsz)
    _check_tuning(data, epochs)
    config = PruneConfig(ratio, importance, allocation, max_layer_ratio, round_to=t.round_to)
    config.check(data)
    detector = _load(model, data, trust_checkpoint)
    measure_acc = data is not None and evaluate and not dry_run
    baseline_metrics = detector.evaluate(data, imgsz=t.imgsz, batch=batch) if measure_acc else {}
    if dry_run:
        report = prune_detector(detector, config, imgsz=t.imgsz, data=data, dry_run=True)
        return PruneOutcome(detector, report, baseline_metrics=baseline_metrics)
    out = Path(out)
    report, checkpoint = prune_and_finetune(
        detector, t, config, data=data, epochs=epochs, batch=batch, out=out, **(train_overrides or {}),
    )  # fmt: skip
    outcome = PruneOutcome(detector, report, checkpoint, baseline_metrics=baseline_metrics)
    if measure_acc:
        outcome.metrics = detector.evaluate(data, imgsz=t.imgsz, batch=batch)
    outcome.report_path = write_report(
        build_report(
            target=t,
            baseline=model_block(counts=report.before, metrics=baseline_metrics, artifact=str(model)),
            result=model_block(counts=report.after, metrics=outcome.metrics, artifact=outcome.checkpoint),
            pruning=report.to_dict(),
        ),
        out / "prune.json",
    )
    return outcome


def export(
    model: Any,
    target: Target | str | Path,
    *,
    imgsz: int | None = None,
    calib: str | Path | None = None,
    calib_images: int | None = None,
    recipe: str | Path | None = None,
    data: str | Path | None = None,
    out: str | Path = "edgeprune-out",
    stem: str | None = None,
    trust_checkpoint: bool = False,
) -> ExportResult:
    """Export ``model`` to the target's runtime and precision; parity against PyTorch is measured.

    Args:
        calib: calibration images for INT8: an image folder or an Ultralytics data.yaml (its
            ``train`` split unless the recipe says otherwise).
        calib_images: how many calibration images (default: the recipe's).
        recipe: calibration recipe name or file (default: the target's ``calibration``).
        data: a data.yaml; when given, mAP50-95 of the PyTorch model and of the artifact are both
            measured on its validation split (every image letterboxed to the target's size) and
            written to OUT/STEM.export.json as ``baseline.metrics`` and ``result.metrics``.
        trust_checkpoint: as for ``prune``.
    """
    t = resolve_target(target, imgsz=imgsz)
    detector = load_model(model, trust_checkpoint=trust_checkpoint)
    get_runtime(t.runtime)  # a missing backend fails before the calibration images are read
    name = stem or (Path(str(model)).stem if isinstance(model, (str, Path)) else "model")
    out = Path(out)
    result = export_detector(detector, t, out, name, calib=calib, calib_images=calib_images, recipe=recipe)
    if data is not None:
        base = detector.evaluate(data, imgsz=t.imgsz, square=True)
        got = detector.evaluate_artifact(result.artifact, data, imgsz=t.imgsz)
        result.details["metrics"] = {"pytorch": base, "artifact": got}
        report = build_report(
            target=t,
            baseline=model_block(metrics=base, artifact=str(model)),
            result=model_block(
                metrics=got, artifact=result.artifact, parity=result.parity, size_mb=round(result.size_mb, 3),
            ),
            export=result.details,
        )  # fmt: skip
        result.details["report"] = str(write_report(report, out / f"{name}.export.json"))
    return result


@dataclass
class ProfileResult:
    stats: LatencyStats
    verdict: Verdict
    environment: dict[str, Any]
    report: dict[str, Any]


def profile(
    artifact: str | Path,
    target: Target | str | Path,
    *,
    json_path: str | Path | None = None,
    max_time_s: float | None = None,
) -> ProfileResult:
    """Time ``artifact`` on this machine with the target's runtime and threads, then judge the budget."""
    t = resolve_target(target)
    artifact = Path(artifact)
    if not artifact.exists():
        raise EdgepruneError(f"artifact not found: {artifact}")
    runtime = get_runtime(t.runtime)
    if artifact.suffix != runtime.suffix:
        raise EdgepruneError(
            f"target {t.name!r} runs {t.runtime}, which needs a {runtime.suffix} artifact; got {artifact.name}"
        )
    session = runtime.load(artifact, threads=t.threads)
    inputs = session.random_inputs()
    p = t.profiling
    stats = measure(
        lambda: session(*inputs),
        warmup=p.warmup,
        iterations=p.iterations,
        min_time_s=p.min_time_s,
        max_time_s=max_time_s,
    )
    verdict = judge(stats, t.budget.latency_ms, t.budget.percentile)
    environment = collect_environment(runtime.environment(), t.threads)
    input_shape = list(session.inputs[0].shape)
    report = build_report(
        target=t,
        result=model_block(latency=stats, artifact=artifact, input_shape=input_shape),
        verdict=verdict,
        environment=environment,
    )
    if len(input_shape) == 4 and input_shape[-1] != t.imgsz:
        report["warnings"] = [
            f"artifact input is {input_shape[-1]} px but target {t.name} expects {t.imgsz} px"
        ]
    if json_path is not None:
        write_report(report, json_path)
    return ProfileResult(stats, verdict, environment, report)
