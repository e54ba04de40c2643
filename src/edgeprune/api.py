"""The public verbs: prune, prune_to_budget, export, profile, profile_remote, run. The CLI is a
thin layer over these."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeprune.errors import EdgepruneError, OptionError
from edgeprune.exporting import export_detector
from edgeprune.files import check_output_folder, check_report_path, output_folder
from edgeprune.models import Detector, load_model
from edgeprune.profiling import LatencyStats, Verdict, collect_environment, judge, measure_profiled
from edgeprune.profiling.meters import LatencyMeter, make_meter
from edgeprune.pruning import PruneConfig, PruneReport, prune_detector
from edgeprune.pruning.actions import PROXY_BN_IMAGES, accuracy_proxy
from edgeprune.pruning.options import FINETUNE_BATCH, FINETUNE_RECIPE, SearchConfig, search_importance
from edgeprune.pruning.search import BudgetSearcher, SearchResult
from edgeprune.pruning.sensitivity import Analysis
from edgeprune.report import build_report, model_block, write_report
from edgeprune.runtimes import get_runtime
from edgeprune.runtimes.base import ExportResult
from edgeprune.targets import Target, load_target


def resolve_target(target: Target | str | Path, **overrides: Any) -> Target:
    """A Target from an object, a shipped name or a YAML path, with non-None overrides applied."""
    from edgeprune.errors import ConfigError

    t = target if isinstance(target, Target) else load_target(target)
    changes = {k: v for k, v in overrides.items() if v is not None}
    if not changes:
        return t
    try:
        return t.with_overrides(**changes)
    except ConfigError as e:  # the options are the user's: name them as options (--imgsz), not as fields
        lines = str(e).split(": ", 1)[-1]
        for key in changes:
            lines = lines.replace(f"{key}:", f"`{key}`:")
        raise OptionError(f"{lines} (for target {t.name})") from None


def dataset_classes(data: str | Path) -> int:
    """Number of classes declared by an Ultralytics data.yaml (read without Ultralytics)."""
    from edgeprune.data.check import check_data_yaml

    return int(check_data_yaml(data)["nc"])


def _load(model: Any, data: str | Path | None, trust_checkpoint: bool = False) -> Detector:
    nc = dataset_classes(data) if data is not None else None
    return load_model(model, nc=nc, trust_checkpoint=trust_checkpoint)


def _check_tuning(data: str | Path | None, epochs: int, batch: int = FINETUNE_BATCH) -> None:
    if batch < 1:
        raise OptionError(f"`batch` must be at least 1, got {batch}")
    if epochs < 0:
        raise OptionError(f"`epochs` must be 0 (no fine-tuning) or more, got {epochs}")
    if epochs > 0 and data is None:
        raise OptionError("fine-tuning (`epochs` > 0) needs a dataset: `data` (an Ultralytics data.yaml)")


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
    before_macs = detector.layer_macs(target.imgsz)
    report = prune_detector(detector, config, imgsz=target.imgsz, data=data)
    report.add_layer_macs(detector, before_macs)
    if epochs > 0:
        detector.train(
            data, epochs=epochs, imgsz=target.imgsz, batch=batch, out_dir=out / "runs",
            **{**FINETUNE_RECIPE, **train_options},
        )  # fmt: skip
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
    importance: str = PruneConfig.importance,
    allocation: str = PruneConfig.allocation,
    max_layer_ratio: float = PruneConfig.max_layer_ratio,
    native: bool = PruneConfig.native,
    keep_heads: bool = PruneConfig.keep_heads,
    data: str | Path | None = None,
    epochs: int = 0,
    imgsz: int | None = None,
    batch: int = FINETUNE_BATCH,
    out: str | Path = "edgeprune-out",
    dry_run: bool = False,
    evaluate: bool = True,
    train_overrides: dict[str, Any] | None = None,
    trust_checkpoint: bool = False,
    resume: bool = False,
) -> PruneOutcome:
    """Prune ``model`` by ``ratio`` with the target's channel alignment, optionally fine-tune.

    ``allocation`` is ``uniform`` (``ratio`` of every group) or ``global`` (``ratio`` of all channels,
    least important first, at most ``max_layer_ratio`` of any group). ``importance="taylor"``
    needs ``data``: a few batches of its train split give the gradients. ``native``: only widths
    the model's config can say, the config rewritten to say them (also written as OUT/pruned.yaml),
    so plain Ultralytics retrains the result (``PruneConfig.native``). ``keep_heads``: attention
    blocks keep all their heads (by default their streams lose whole heads, least important first).

    Writes ``OUT/pruned.pt`` (loadable by ``ultralytics.YOLO``) and ``OUT/prune.json``. With
    ``data``, mAP is measured before and after; ``epochs > 0`` fine-tunes on ``data``.
    A checkpoint is unpickled through an allow-list (``UnsafeCheckpointError`` otherwise);
    ``trust_checkpoint=True`` loads it with plain pickle, which runs whatever code it holds.
    ``resume=True`` continues a killed fine-tuning into the same ``out`` after its last finished
    epoch (the pruning, a second or so, is done again and must give the same architecture).
    """
    t = resolve_target(target, imgsz=imgsz)
    _check_tuning(data, epochs, batch)
    if resume and epochs <= 0:
        raise OptionError(
            "`resume` continues a fine-tuning (`epochs`) or a budget search; a ratio prune without epochs "
            "has nothing to resume"
        )
    if not dry_run:
        check_output_folder(out)
    config = PruneConfig(
        ratio,
        importance,
        allocation,
        max_layer_ratio,
        round_to=t.round_to,
        native=native,
        keep_heads=keep_heads,
    )
    config.check_data(data)
    detector = _load(model, data, trust_checkpoint)
    measure_acc = data is not None and evaluate and not dry_run
    baseline_metrics = (
        detector.evaluate(data, imgsz=t.imgsz, batch=batch, breakdown=True) if measure_acc else {}
    )
    if dry_run:
        report = prune_detector(detector, config, imgsz=t.imgsz, data=data, dry_run=True)
        return PruneOutcome(detector, report, baseline_metrics=baseline_metrics)
    with output_folder(out) as out:
        report, checkpoint = prune_and_finetune(
            detector, t, config, data=data, epochs=epochs, batch=batch, out=out, resume=resume,
            **(train_overrides or {}),
        )  # fmt: skip
        outcome = PruneOutcome(detector, report, checkpoint, baseline_metrics=baseline_metrics)
        if measure_acc:
            outcome.metrics = detector.evaluate(data, imgsz=t.imgsz, batch=batch, breakdown=True)
        outcome.report_path = write_report(
            build_report(
                target=t,
                baseline=model_block(counts=report.before, metrics=baseline_metrics, artifact=str(model)),
                result=model_block(counts=report.after, metrics=outcome.metrics, artifact=outcome.checkpoint),
                pruning=report.to_dict(),
            ),
            out / "prune.json",
            html=True,
        )
        return outcome


@dataclass
class BudgetOutcome(SearchResult):
    """What ``prune_to_budget`` returns: the search's ``SearchResult`` and the report written
    from it (``report``, as in ``report_path``: OUT/prune.json)."""

    report: dict[str, Any] = field(default_factory=dict)
    report_path: Path | None = None


def search_config(target: Target, data: str | Path | None = None, **options: Any) -> SearchConfig:
    """A ``SearchConfig`` from keyword options, with the target's budget and percentile and the
    default criterion for ``data`` filled in. ``epochs`` is the final fine-tuning (``final_epochs``)."""
    if "epochs" in options:
        options["final_epochs"] = options.pop("epochs")
    unknown = sorted(set(options) - set(SearchConfig.field_names()))
    if unknown:
        known = ", ".join(n for n in SearchConfig.field_names() if n != "final_epochs")
        raise OptionError(f"unknown option {', '.join(f'`{n}`' for n in unknown)}; known: epochs, {known}")
    options = {k: v for k, v in options.items() if v is not None}
    if "budget_ms" in options and "speedup" in options:  # Nones are dropped above
        raise OptionError(
            "`budget_ms` and `speedup` exclude each other: a latency, or a ratio to the baseline's"
        )
    if "speedup" not in options:
        options.setdefault("budget_ms", float(target.budget.latency_ms))
    options.setdefault("percentile", target.budget.percentile)
    options.setdefault("importance", search_importance(data))
    return SearchConfig(**options)


def prune_to_budget(
    model: Any,
    target: Target | str | Path,
    config: SearchConfig | None = None,
    *,
    data: str | Path | None = None,
    calib: str | Path | None = None,
    imgsz: int | None = None,
    batch: int = FINETUNE_BATCH,
    out: str | Path = "edgeprune-out",
    resume: bool = False,
    trust_checkpoint: bool = False,
    train_overrides: dict[str, Any] | None = None,
    meter: LatencyMeter | Callable[[Detector, str], float] | None = None,
    host: str | None = None,
    host_python: str = "python3",
    ssh_config: str | Path | None = None,
    say: Callable[[str], None] = print,
    **options: Any,
) -> BudgetOutcome:
    """Prune ``model`` until its artifact, measured on the target's runtime and precision, meets
    the budget at the target's percentile; OUT/prune.json has every step and probe.

    Args:
        model: checkpoint path, model config name or ``nn.Module``.
        target: a ``Target``, a shipped target's name or a target YAML path.
        config: the search's settings; or give them as keyword ``options`` (the fields of
            ``SearchConfig``, with ``epochs`` for ``final_epochs``), e.g. ``speedup=2, epochs=20``.
            The budget defaults to the target's, the percentile is the target's, and the criterion
            is ``taylor`` with ``data`` and ``l2`` without. ``budget_ms`` holds the model to a fixed
            number as ``edgeprune profile`` does; ``speedup=S`` asks for S times faster than the
            unpruned model, read against the baseline timed again alongside every candidate and the
            final check, so a machine running faster or slower as a whole does not move the goal.
        data: Ultralytics data.yaml: accuracy before and after, fine-tuning (``step_epochs``,
            ``epochs``), Taylor gradients and BatchNorm re-estimation.
        calib: INT8 targets: calibration images (default: ``data``).
        resume: continue an interrupted run from OUT/search/state.json.
        meter: your own ``LatencyMeter``, or a function ``fn(detector, name) -> ms``.
        host: measure every candidate and the final artifact on this SSH host (the device itself,
            as ``edgeprune profile --host`` does), with ``host_python`` and ``ssh_config``.
        say: where progress lines go.

    Returns:
        The outcome; ``passed`` is False when the budget could not be reached: the outcome then
        holds the smallest model reached, and the message says at what latency and size.
    """
    t = resolve_target(target, imgsz=imgsz)
    if t.budget.scope == "end_to_end":
        raise OptionError(
            f"target {t.name}'s budget is end to end; the budget search times the engine: give it a target "
            "whose budget scope is engine (with the engine's share of the budget), then check with "
            "`edgeprune profile --end-to-end`"
        )
    if config is None:
        config = search_config(t, data, **options)
    elif options:
        raise OptionError(f"give `config` or keyword options, not both (got {', '.join(sorted(options))})")
    _check_budget_search(config, data, batch, auto_ok=meter is None and host is None)
    out = Path(out)
    if resume and not (out / "search" / "state.json").is_file():
        raise OptionError(
            f"`resume`: nothing to resume, {out / 'search' / 'state.json'} does not exist; run without it to start"
        )
    check_output_folder(out)
    detector = _load(model, data, trust_checkpoint)
    with output_folder(out) as out:
        if config.sensitivity is not None:  # of this model and target, before any work
            from edgeprune.pruning.pruner import prunable_groups
            from edgeprune.pruning.sensitivity import Analysis

            names = [n for n, _ in prunable_groups(detector, t.round_to)]
            Analysis.load(config.sensitivity).check_for(t, names, config.sensitivity)
        calib = calib or data
        latency = make_meter(
            t, out / "search" / "probes", meter=meter, host=host, host_python=host_python, ssh_config=ssh_config,
            calib=calib, calib_images=config.calib_images, rounds=config.rounds, iterations=config.iterations,
            warmup=config.warmup,
        )  # fmt: skip
        teacher = None
        source = detector
        if config.distill:
            (out / "search").mkdir(parents=True, exist_ok=True)
            if config.teacher is not None:
                source = load_model(config.teacher, trust_checkpoint=trust_checkpoint)
                detector.check_teacher(source, config.teacher)
            teacher = source.save(out / "search" / "teacher.pt", {"role": "distillation teacher"})
        baseline_metrics = (
            detector.evaluate(data, imgsz=t.imgsz, batch=batch, breakdown=True) if data is not None else {}
        )
        searcher = BudgetSearcher(
            detector, config, latency, target=t, out=out, data=data, calib=calib, say=say,
            finetune=_finetuner(t, data, batch, out, teacher, config.distill_mode, train_overrides, say)
            if data is not None
            else None,
            evaluate=(lambda det: det.evaluate(data, imgsz=t.imgsz, batch=batch, breakdown=True))
            if data is not None
            else None,
            proxy=(lambda det: accuracy_proxy(det, data, t.imgsz, bn_images=min(PROXY_BN_IMAGES, config.bn_images)))
            if data is not None
            else None,
        )  # fmt: skip
        result = searcher.search(resume=resume)
        report = _budget_report(result, t, model, baseline_metrics, local=meter is None and host is None)
        for warning in report.get("warnings", []):
            say(f"warning: {warning}")
        if teacher is not None and data is not None:
            teacher_metrics = (
                baseline_metrics if source is detector else source.evaluate(data, imgsz=t.imgsz, batch=batch)
            )
            outgrown = _outgrown_teacher(teacher_metrics, result.metrics, config.teacher)
            if outgrown:
                say(f"warning: {outgrown}")
                report.setdefault("warnings", []).append(outgrown)
        found = {f.name: getattr(result, f.name) for f in fields(result)}
        return BudgetOutcome(
            **found, report=report, report_path=write_report(report, out / "prune.json", html=True)
        )


def _outgrown_teacher(
    teacher: dict[str, float], student: dict[str, float], teacher_path: str | None
) -> str | None:
    """The warning when the distilled student ends above its teacher: such a teacher gives nothing
    and may cost, even though distillation stops once the student passes it (on the hard preset,
    from the 40-epoch model it was pruned from: -0.06 points on the mean of three seeds, -0.59 on
    the worst; from a teacher 9 points ahead, +1.57)."""
    t, s = teacher.get("map50_95"), student.get("map50_95")
    if t is None or s is None or s <= t:
        return None
    which = f"the teacher {teacher_path}" if teacher_path else "the model given (the teacher)"
    return (
        f"the pruned model ends at mAP50-95 {s:.4f}, above {which} at {t:.4f}: a teacher its student "
        "outgrows adds nothing on average and costs on some seeds, even though distillation stops once it "
        "is passed, so fine-tuning without distillation may score higher; distil from a stronger checkpoint "
        "(--teacher: trained longer, or larger) or drop --distill"
    )


def _check_budget_search(config: SearchConfig, data: str | Path | None, batch: int, *, auto_ok: bool) -> None:
    """What the search cannot honour with ``data``, ``batch`` and its meter, refused before any work."""
    _check_tuning(data, config.final_epochs + config.step_epochs, batch)
    if config.distill and data is None:
        raise OptionError("`distill` fine-tunes: it needs `data` and `epochs`")
    config.check_data(data)
    if config.margin == "auto" and not auto_ok:
        raise OptionError(
            "`margin` auto reads the machine's spread from the baseline timed again in every round of the "
            "local measurement; with `host` (or your own meter) give a fraction, e.g. 0.05"
        )
    PruneConfig(0.0, config.importance, "global", config.max_layer_ratio).check_data(data)


def _finetuner(
    t: Target,
    data: str | Path,
    batch: int,
    out: Path,
    teacher: Path | None,
    mode: str | None,
    train_overrides: dict[str, Any] | None,
    say: Callable[[str], None],
) -> Callable[[Detector, int, str], None]:
    """The search's fine-tuning: Ultralytics' trainer on ``data``, distilled from ``teacher`` in
    ``mode`` (``DISTILL_MODES``) if any."""
    from edgeprune.models.distill import trainer_overrides

    extra = trainer_overrides(mode, teacher)

    def finetune(det: Detector, epochs: int, name: str, resume: bool = False) -> None:
        say(f"  fine-tuning {epochs} epochs{f' with {mode} distillation' if mode else ''} ...")
        det.train(
            data, epochs=epochs, imgsz=t.imgsz, batch=batch, out_dir=out / "runs", name=name, progress=say,
            resume=resume, **{**FINETUNE_RECIPE, **extra, **(train_overrides or {})},
        )  # fmt: skip

    return finetune


def _budget_report(
    result: SearchResult, t: Target, model: Any, baseline_metrics: dict[str, float], local: bool = True
) -> dict[str, Any]:
    """prune.json of a budget search."""
    from edgeprune.profiling.trust import timing_warnings
    from edgeprune.pruning.records import reversed_probes_warning

    b = result.baseline
    # threads are compared with this machine's CPUs only when this machine did the timing
    warnings = timing_warnings(result.stats, t.threads if local else None)
    reversed_probes = reversed_probes_warning(result.probes)
    if reversed_probes:
        warnings.append(reversed_probes)
    return build_report(
        target=t.with_overrides(budget={"latency_ms": result.verdict.budget_ms}),
        baseline=model_block(
            counts={"params": b["params"], "macs": b["macs"]}, metrics=baseline_metrics,
            artifact=model.source if isinstance(model, Detector) else str(model),
            measured_ms=b["measured_ms"],
        ),
        result=model_block(
            counts=result.counts, latency=result.stats, metrics=result.metrics, artifact=result.artifact,
            checkpoint=str(result.checkpoint), parity=result.export.parity,
        ),
        verdict=result.verdict,
        environment=collect_environment(get_runtime(t.runtime).environment(), t.threads),
        search=result.search_block(),
        message=result.message,
        **({"warnings": warnings} if warnings else {}),
    )  # fmt: skip


def analyze(
    model: Any,
    target: Target | str | Path,
    *,
    data: str | Path,
    ratios: Sequence[float] | None = None,
    with_map: bool = False,
    importance: str | None = None,
    groups: Sequence[str] | None = None,
    imgsz: int | None = None,
    calib: str | Path | None = None,
    out: str | Path = "edgeprune-out",
    trust_checkpoint: bool = False,
    meter: LatencyMeter | Callable[[Detector, str], float] | None = None,
    say: Callable[[str], None] = print,
) -> Analysis:
    """Measure each prunable group's sensitivity: pruned alone at each of ``ratios`` (default
    ``RATIOS``), the accuracy proxy's rise (and mAP50-95 with ``with_map``) and the latency saved
    on the target's runtime, timed against the baseline as the budget search times. Writes
    OUT/analysis.json, which ``prune_to_budget(..., sensitivity=...)`` ranks groups by. The
    groups done so far are kept in OUT/analysis/partial.json: run it again after an interruption
    and it continues.

    Args:
        model: checkpoint path or model config.
        target: a ``Target``, a shipped target's name or a target YAML path.
        data: Ultralytics data.yaml (proxy loss, gradients, BatchNorm, mAP).
        importance: which channels of a group go first (default: the search's, ``taylor``).
        groups: only these groups (names as in analysis.json); default all.
        calib: INT8 targets: images that calibrate each candidate (default: ``data``).
        meter: your own ``LatencyMeter`` or ``fn(detector, name) -> ms`` (default: timed here,
            interleaved against the baseline).
    """
    from edgeprune.pruning.sensitivity import RATIOS
    from edgeprune.pruning.sensitivity import analyze as measure_groups

    t = resolve_target(target, imgsz=imgsz)
    ratios = tuple(RATIOS if ratios is None else ratios)  # checked by measure_groups, before any work
    criterion = importance or search_importance(data)
    PruneConfig(0.0, criterion, "global").check_data(data)
    check_output_folder(out)
    detector = _load(model, data, trust_checkpoint)
    with output_folder(out) as out:
        d = SearchConfig(speedup=2)  # the search's timing settings
        latency = make_meter(
            t, out / "analysis" / "probes", meter=meter, calib=calib or data, calib_images=d.calib_images, rounds=d.rounds,
            iterations=d.iterations, warmup=d.warmup,
        )  # fmt: skip
        partial = out / "analysis" / "partial.json"  # an interrupted analysis continues from it
        analysis = measure_groups(
            detector, t, latency, data, ratios=ratios, importance=criterion, with_map=with_map, groups=groups,
            partial=partial, say=say,
        )  # fmt: skip
        analysis.save(out / "analysis.json")
        partial.unlink(missing_ok=True)
        return analysis


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
    max_drop: float | None = None,
    end2end: bool = False,
    say: Callable[[str], None] = lambda line: None,
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
        max_drop: INT8 only, needs ``data``: keep the layers that cost most accuracy in float
            until the artifact loses at most this many points of mAP50-95
            (``accuracy_control.py``); ``details["accuracy_control"]`` says what it took.
        end2end: an NMS-free head (YOLOv10, YOLO26) exported with its one-to-one branch: the
            artifact returns final detections (metadata ``end2end: true``) and no NMS follows.
        say: progress lines of the accuracy control.
    """
    t = resolve_target(target, imgsz=imgsz)
    if calib_images is not None and calib_images < 1:
        raise OptionError(f"`calib_images` must be at least 1, got {calib_images}")
    if max_drop is not None and max_drop < 0:
        raise OptionError(
            f"`max_drop` is the mAP50-95 points the artifact may lose: 0 or more, got {max_drop}"
        )
    if max_drop is not None and data is None:
        raise OptionError("`max_drop` measures the artifact's mAP50-95: it needs `data` (a data.yaml)")
    if data is not None:
        dataset_classes(data)  # a bad data.yaml fails before the export
    check_output_folder(out)
    detector = load_model(model, trust_checkpoint=trust_checkpoint)
    get_runtime(t.runtime)  # a missing backend fails before the calibration images are read
    name = stem or (Path(str(model)).stem if isinstance(model, (str, Path)) else "model")
    from edgeprune.models.detections import describe_collapse

    with output_folder(out) as out:
        base = None
        if max_drop is None:
            result = export_detector(
                detector, t, out, name, calib=calib, calib_images=calib_images, recipe=recipe, end2end=end2end
            )
        else:
            from edgeprune.accuracy_control import export_within_drop

            controlled = export_within_drop(
                detector, t, out, name, data=data, max_drop=max_drop, calib=calib, calib_images=calib_images,
                recipe=recipe, end2end=end2end, say=say,
            )  # fmt: skip
            result, base = controlled.export, controlled.fp32_metrics
        if data is not None:
            base = base or detector.evaluate(data, imgsz=t.imgsz, square=True, breakdown=True)
            got = detector.evaluate_artifact(result.artifact, data, imgsz=t.imgsz, breakdown=True)
            result.details["metrics"] = {"pytorch": base, "artifact": got}
            report = build_report(
                target=t,
                baseline=model_block(metrics=base, artifact=str(model)),
                result=model_block(
                    metrics=got, artifact=result.artifact, parity=result.parity, size_mb=round(result.size_mb, 3),
                ),
                export=result.details,
            )  # fmt: skip
            collapse = describe_collapse(result.parity)
            if collapse:
                report["warnings"] = [collapse]
            result.details["report"] = str(write_report(report, out / f"{name}.export.json", html=True))
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
    end_to_end: bool | None = None,
    images: str | Path | None = None,
) -> ProfileResult:
    """Time ``artifact`` on this machine with the target's runtime and threads, then judge the budget.

    ``end_to_end`` (default: the target's ``budget.scope`` is ``end_to_end``): time each frame's
    letterbox, inference and decode + NMS on real ``images`` (a folder, or a data.yaml's
    validation split) and judge the budget on the total; the report's ``end_to_end`` has every
    stage (``profiling/end_to_end.py``).
    """
    t = resolve_target(target)
    artifact = Path(artifact)
    if not artifact.exists():
        raise EdgepruneError(f"artifact not found: {artifact}")
    runtime = get_runtime(t.runtime)
    if artifact.suffix != runtime.suffix:
        raise EdgepruneError(
            f"target {t.name!r} runs {t.runtime}, which needs a {runtime.suffix} artifact; got {artifact.name}"
        )
    if json_path is not None:
        check_report_path(json_path, "--json")
    if end_to_end is None:
        end_to_end = t.budget.scope == "end_to_end"
    if end_to_end and t.batch != 1:
        raise OptionError(f"end-to-end timing feeds one frame at a time; target {t.name} has batch {t.batch}")
    if end_to_end and images is None:
        raise OptionError(
            "end-to-end timing letterboxes real frames: give `images` (an image folder or a data.yaml)"
        )
    from edgeprune.profiling.trust import timing_warnings, watch_cpu

    session = runtime.open(artifact, threads=t.threads)
    e2e = None
    with watch_cpu() as watch:
        if end_to_end:
            e2e = _end_to_end(runtime, session, artifact, t, images, max_time_s)
            stats = e2e.total
        else:
            stats = measure_profiled(session.runner(), t.profiling, max_time_s=max_time_s)
    verdict = judge(stats, t.budget.latency_ms, t.budget.percentile)
    environment = collect_environment(runtime.environment(), t.threads)
    if watch.others_cores is not None:
        environment["other_load_cores"] = round(watch.others_cores, 3)
    input_shape = list(session.inputs[0].shape)
    report = build_report(
        target=t.with_overrides(budget={"scope": "end_to_end" if end_to_end else "engine"}),
        result=model_block(latency=stats, artifact=artifact, input_shape=input_shape),
        verdict=verdict,
        environment=environment,
    )
    if e2e is not None:
        report["end_to_end"] = e2e.to_dict()
    warnings = timing_warnings(stats, t.threads, watch)
    if len(input_shape) == 4 and input_shape[-1] != t.imgsz:
        warnings.append(f"artifact input is {input_shape[-1]} px but target {t.name} expects {t.imgsz} px")
    if warnings:
        report["warnings"] = warnings
    if json_path is not None:
        write_report(report, json_path, html=True)
    return ProfileResult(stats, verdict, environment, report)


def _end_to_end(
    runtime: Any, session: Any, artifact: Path, t: Target, images: str | Path, max_time_s: float | None
) -> Any:
    from edgeprune.calibration.sources import source_images
    from edgeprune.profiling.end_to_end import IMAGES, measure_end_to_end, postprocessor

    post, describe = postprocessor(runtime.read_metadata(artifact), t.imgsz, runtime.normalized_boxes)
    frames = source_images(images, "val", flag="--images")[:IMAGES]
    return measure_end_to_end(session, frames, t.imgsz, post, describe, t.profiling, max_time_s=max_time_s)


def profile_remote(
    artifact: str | Path,
    target: Target | str | Path,
    hosts: list[str],
    *,
    hosts_file: str | Path | None = None,
    ssh_config: str | Path | None = None,
    json_path: str | Path | None = None,
    time_limit_s: float = 600.0,
) -> dict[str, Any]:
    """Profile ``artifact`` on every host over SSH in parallel; returns (and writes) one report.

    A host that has not reported within ``time_limit_s`` is stopped (its profiler killed, its
    temporary folder removed) and reported as failed.

    ``hosts`` are ``user@host[:port]`` or ``~/.ssh/config`` aliases; a ``hosts_file`` adds more
    (and may name the Python that has edgeprune on each). ``passed`` is True only when every host
    met the budget; a host that failed has ``ok: false`` and its ``error``.
    """
    from dataclasses import asdict

    from edgeprune.profiling.remote import HostSpec, load_hosts_file, profile_hosts

    t = resolve_target(target)
    if t.budget.scope == "end_to_end":
        raise OptionError(
            f"target {t.name}'s budget is end to end; over SSH only the engine is timed so far: "
            "profile on the device itself, or give a target whose budget scope is engine"
        )
    if ssh_config is not None and not Path(ssh_config).is_file():
        raise EdgepruneError(f"--ssh-config {ssh_config}: no such file (an OpenSSH client config)")
    specs = [HostSpec.parse(h) for h in hosts] + (load_hosts_file(hosts_file) if hosts_file else [])
    if not specs:
        raise OptionError("no host given: `host` (user@host[:port]) or `hosts_file`")
    if json_path is not None:
        check_report_path(json_path, "--json")
    if time_limit_s <= 0:
        raise OptionError(f"`timeout` must be more than 0 seconds, got {time_limit_s}")
    results = profile_hosts(specs, artifact, t, ssh_config=ssh_config, time_limit_s=time_limit_s)
    rows = [{k: v for k, v in asdict(r).items() if k != "remote_tmp"} for r in results]
    passed = all(r.ok and r.report.get("passed") for r in results) if results else False
    result = model_block(artifact=Path(artifact))
    timed = [r for r in results if r.ok and (r.report.get("result") or {}).get("latency_ms")]
    if timed:  # the same keys as a local report: the slowest host's latency, the one the verdict hinges on
        slowest = max(timed, key=lambda r: r.report["result"]["latency_ms"].get(t.budget.percentile) or 0.0)
        result["latency_ms"] = slowest.report["result"]["latency_ms"]
        result["host"] = slowest.host
    report = build_report(target=t, result=result, hosts=rows, errors=[r.error for r in results if r.error])
    report["passed"] = passed
    if timed and all(r.ok for r in results):  # with a host failed there is no verdict on every host
        report["verdict"] = slowest.report.get("verdict")
    report["warnings"] = [f"{r.host}: {w}" for r in results for w in r.warnings]
    if json_path is not None:
        write_report(report, json_path)
    return report


def run(recipe: str | Path, *, say: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole flow from a recipe file (``edgeprune run RECIPE.yaml``): prune, fine-tune, export
    and profile the baseline and the pruned model side by side, then judge the budget.

    Returns:
        The report, also written to the recipe's ``out`` folder as ``report.json``.
    """
    from edgeprune.pipeline import run_pipeline
    from edgeprune.recipe import load_recipe

    return run_pipeline(load_recipe(recipe), say=say)
