"""The public verbs: prune, export, profile. The CLI is a thin layer over these."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgeprune.errors import EdgepruneError
from edgeprune.exporting import Check, export_detector
from edgeprune.models import Detector, load_model
from edgeprune.profiling import LatencyStats, Verdict, collect_environment, judge, measure_profiled
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


@dataclass
class BudgetOutcome:
    """What ``prune_to_budget`` produced: the pruned model, its artifact and the verdict."""

    detector: Detector
    passed: bool
    verdict: Verdict
    checkpoint: Path
    artifact: Path
    report: dict[str, Any]
    report_path: Path
    message: str


def prune_to_budget(
    model: Any,
    target: Target | str | Path,
    *,
    budget_ms: float | None = None,
    speedup: float | None = None,
    data: str | Path | None = None,
    epochs: int = 0,
    step_epochs: int = 0,
    steps: int = 3,
    importance: str | None = None,
    max_layer_ratio: float = 0.6,
    margin: float | str = 0.03,
    distill: bool = False,
    calib: str | Path | None = None,
    imgsz: int | None = None,
    batch: int = 16,
    out: str | Path = "edgeprune-out",
    resume: bool = False,
    trust_checkpoint: bool = False,
    train_overrides: dict[str, Any] | None = None,
    meter: Any = None,
    host: str | None = None,
    host_python: str = "python3",
    ssh_config: str | Path | None = None,
    say: Any = print,
) -> BudgetOutcome:
    """Prune ``model`` until its artifact, measured on the target's runtime and precision, meets
    ``budget_ms`` (default: the target's budget) at the target's percentile; or, with ``speedup``,
    runs that many times faster than the unpruned model measured the same way.

    A ``speedup`` budget is read against the baseline timed again alongside every candidate and
    alongside the final check, so a machine running faster or slower as a whole moves the budget in
    ms with it (the report gives the budget in ms as of the final check), while an absolute
    ``budget_ms`` holds the model to a fixed number as ``edgeprune profile`` does.
    ``steps`` pruning steps walk the latency down to the budget; ``step_epochs`` fine-tune after
    each step, ``epochs`` after the last (both need ``data``), with knowledge distillation from the
    unpruned model if ``distill``. The search aims ``margin`` under the budget: a fraction, or
    ``"auto"`` (as far under as the baseline's timings ran slow at their p90 during the search; the
    local meter only). INT8 targets calibrate on ``calib`` (default: ``data``). The
    final artifact is profiled like ``edgeprune profile`` does and judged; OUT/prune.json has every
    step and probe with predicted and measured latency. ``resume=True`` continues an interrupted
    run from OUT/search/state.json. ``passed`` is False when the budget could not be reached: the
    outcome then holds the smallest model reached, and the message says at what latency and size.
    ``host`` measures every candidate and the final artifact on that SSH host (the device itself,
    through ``edgeprune profile --host``); ``meter(detector, name) -> ms`` replaces the meter entirely.
    """
    from edgeprune.exporting import ArtifactMeter, RemoteMeter
    from edgeprune.pruning.search import SearchConfig, search_budget

    t = resolve_target(target, imgsz=imgsz)
    if budget_ms is not None and speedup is not None:
        raise EdgepruneError(
            "--budget-ms and --speedup exclude each other: a latency, or a ratio to the baseline's"
        )
    budget = (
        None if speedup is not None else float(budget_ms if budget_ms is not None else t.budget.latency_ms)
    )
    percentile = t.budget.percentile
    importance = importance or ("taylor" if data is not None else "l2")
    _check_tuning(data, epochs + step_epochs)
    if distill and data is None:
        raise EdgepruneError("distillation fine-tunes: it needs --data and --epochs")
    config = SearchConfig(
        budget_ms=budget, speedup=speedup, percentile=percentile, steps=steps, importance=importance,
        max_layer_ratio=max_layer_ratio, margin=margin, step_epochs=step_epochs, final_epochs=epochs,
        distill=distill,
    )  # fmt: skip
    config.check()
    if margin == "auto" and (host is not None or meter is not None):
        raise EdgepruneError(
            "--margin auto reads the machine's spread from the baseline timed again in every round of the "
            "local measurement; with --host (or your own meter) give a fraction, e.g. --margin 0.05"
        )
    PruneConfig(0.0, importance, "global", max_layer_ratio, t.round_to).check(data)
    out = Path(out)
    (out / "search").mkdir(parents=True, exist_ok=True)
    detector = _load(model, data, trust_checkpoint)
    calib = calib or data
    if meter is None and host is not None:
        meter = RemoteMeter(
            t, out / "search" / "probes", host, percentile=percentile, ssh_config=ssh_config, python=host_python,
            calib=calib, calib_images=config.calib_images,
        )  # fmt: skip
    meter = meter or ArtifactMeter(
        t, out / "search" / "probes", percentile=percentile, calib=calib, calib_images=config.calib_images,
        rounds=config.rounds, iterations=config.iterations, warmup=config.warmup,
    )  # fmt: skip

    teacher = None
    if distill:
        teacher = detector.save(out / "search" / "teacher.pt", {"role": "distillation teacher"})

    def finetune(det: Detector, n: int, name: str) -> None:
        extra = {"distill_model": str(teacher)} if teacher is not None else {}
        say(f"  fine-tuning {n} epochs{' with distillation' if teacher else ''} ...")
        det.train(
            data, epochs=n, imgsz=t.imgsz, batch=batch, out_dir=out / "runs", name=name, progress=say,
            **extra, **(train_overrides or {}),
        )  # fmt: skip

    def evaluate(det: Detector) -> dict[str, float]:
        return det.evaluate(data, imgsz=t.imgsz, batch=batch)

    baseline_metrics = evaluate(detector) if data is not None else {}
    pruned, steps_done, probes, latency_model, baseline = search_budget(
        detector, config, meter=meter, round_to=t.round_to, imgsz=t.imgsz, out=out, data=data,
        finetune=finetune if data is not None else None, evaluate=evaluate if data is not None else None,
        check=meter.alone if isinstance(meter, ArtifactMeter) else None, resume=resume, say=say,
        reference_timings=(lambda: meter.reference_timings) if isinstance(meter, ArtifactMeter) else None,
    )  # fmt: skip
    if not steps_done and epochs > 0:
        finetune(pruned, epochs, "final")
    # the baseline's latency in the search's frame: the median of its timings (the first one with a
    # meter that does not time it again)
    reference_ms = getattr(meter, "reference_ms", None)
    budget_search = config.budget_at(reference_ms or baseline["measured_ms"])
    checkpoint = pruned.save(
        out / "pruned.pt",
        {"budget_ms": budget_search, "speedup": speedup, "target": t.name, "steps": len(steps_done)},
    )
    final = export_detector(pruned, t, out, "pruned", calib=calib)
    check = _final_check(final.artifact, t, meter, remote=host is not None)
    stats, reference_now = check.stats, check.reference_ms
    # a speed-up is judged against the baseline as timed alongside the final check, where it was
    budget = config.budget_at(reference_now or reference_ms or baseline["measured_ms"])
    verdict = judge(stats, budget, percentile)
    # the search's last timing of this very model (against the baseline, in interleaved rounds)
    searched_ms = steps_done[-1].measured_ms if steps_done else baseline["measured_ms"]
    counts = pruned.count(t.imgsz)
    predicted = steps_done[-1].predicted_ms if steps_done else baseline["measured_ms"]
    final_ms = stats.get(percentile)
    # Predictions are in the frame of the baseline's timing during the search; a shared machine may
    # run everything faster or slower by now. The final artifact timed in rounds against the
    # baseline gives its latency in that frame, so the latency model's error is told apart from the
    # machine's (the verdict uses final_ms as measured).
    drift = reference_now / reference_ms if reference_now and reference_ms else None
    in_frame = check.in_frame(reference_ms)
    error = abs(predicted - (in_frame or final_ms)) / (in_frame or final_ms)
    metrics = steps_done[-1].metrics if steps_done and steps_done[-1].metrics else {}
    if data is not None and (not metrics or not steps_done):
        metrics = evaluate(pruned)
    if verdict.passed:
        message = verdict.sentence()
    elif searched_ms <= budget_search:  # not a limit of pruning: two timings of one model disagree
        message = (
            f"budget not met on the final check: {final_ms:.2f} ms {percentile} on its own (budget "
            f"{budget:.2f} ms), while the search timed this model at {searched_ms:.2f} ms against the baseline; "
            f"the machine's timing varies (cv {stats.cv:.0%} in the final check), so re-measure it with "
            f"`edgeprune profile` or on a dedicated device; kept: {checkpoint}, {final.artifact}"
        )
    else:
        message = (
            f"budget not met: the smallest model reached runs in {stats.get(percentile):.2f} ms {percentile} "
            f"(budget {budget:.2f} ms) with {counts['params'] / 1e6:.2f}M params and "
            f"{counts['macs'] / 1e9:.2f} GMACs at {t.imgsz} px; kept: {checkpoint}, {final.artifact}"
        )
    if speedup is not None:
        message += (
            f" (speed-up {speedup:g}x: the budget is the baseline's {budget * speedup:.2f} ms, timed alongside "
            f"the final check, / {speedup:g}; the verdict of `edgeprune profile` uses the target's budget instead)"
        )
    search_block = {
        "config": {k: v for k, v in config.__dict__.items()},
        "speedup": speedup,
        "round_to": t.round_to,  # every pruned width is a multiple of this
        "budget_ms_in_search": budget_search,  # with a speed-up: the baseline's median timing / speedup
        "steps": [s.__dict__ for s in steps_done],
        "probes": [p_.__dict__ for p_ in probes],
        "latency_points": latency_model.points,
        "predicted_ms": predicted,
        "measured_ms_in_search": searched_ms,
        "measured_ms_checked": steps_done[-1].checked_ms if steps_done else None,
        "measured_ms_final": final_ms,
        "measured_ms_final_in_search_frame": in_frame,
        "reference_ms": reference_ms,
        "reference_ms_final": reference_now,
        "drift": drift,
        "prediction_error": error,
        "prediction_error_uncorrected": abs(predicted - final_ms) / final_ms,
        "margin": _margin_used(config, meter),
    }
    report = build_report(
        target=t.with_overrides(budget={"latency_ms": budget}),
        baseline=model_block(
            counts={"params": baseline["params"], "macs": baseline["macs"]}, metrics=baseline_metrics,
            artifact=str(model), measured_ms=baseline["measured_ms"],
        ),
        result=model_block(
            counts=counts, latency=stats, metrics=metrics, artifact=final.artifact, checkpoint=str(checkpoint),
            parity=final.parity,
        ),
        verdict=verdict,
        environment=collect_environment(get_runtime(t.runtime).environment(), t.threads),
        search=search_block,
        message=message,
    )  # fmt: skip
    report_path = write_report(report, out / "prune.json")
    return BudgetOutcome(
        pruned, verdict.passed, verdict, checkpoint, final.artifact, report, report_path, message
    )


def _margin_used(config: Any, meter: Any) -> dict[str, Any]:
    """The margin the search aimed at, and for ``auto`` what it was read from."""
    import numpy as np

    from edgeprune.pruning.search import auto_margin

    if config.margin != "auto":
        return {"setting": config.margin, "fraction": config.margin}
    timings = list(getattr(meter, "reference_timings", []))
    out: dict[str, Any] = {
        "setting": "auto",
        "fraction": auto_margin(timings),
        "reference_timings": len(timings),
    }
    if timings:
        out["reference_p50_ms"], out["reference_p90_ms"] = (
            float(v) for v in np.percentile(timings, [50, 90])
        )
    return out


def _final_check(artifact: Path, t: Target, meter: Any, *, remote: bool) -> Check:
    """The final artifact profiled on its own like ``edgeprune profile`` does, here or on the host;
    with the baseline timed in alternating rounds when the meter can time it again (an
    ``ArtifactMeter``: three rounds each)."""
    from edgeprune.exporting import ArtifactMeter

    if remote:
        from edgeprune.profiling.remote import profile_hosts

        (r,) = profile_hosts([meter.spec], artifact, t, ssh_config=meter.ssh_config)
        if not r.ok:
            raise EdgepruneError(f"profiling the final artifact on {meter.spec.label} failed: {r.error}")
        got = r.report["result"]["latency_ms"]
        fields = LatencyStats.__dataclass_fields__
        return Check(LatencyStats(**{k: got.get(k, float("nan")) for k in fields if k != "outliers"}))
    if isinstance(meter, ArtifactMeter):
        return meter.check(artifact)
    session = get_runtime(t.runtime).load(artifact, threads=t.threads)
    inputs = session.random_inputs()
    return Check(measure_profiled(lambda: session(*inputs), t.profiling))


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
    stats = measure_profiled(lambda: session(*inputs), t.profiling, max_time_s=max_time_s)
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


def profile_remote(
    artifact: str | Path,
    target: Target | str | Path,
    hosts: list[str],
    *,
    hosts_file: str | Path | None = None,
    ssh_config: str | Path | None = None,
    json_path: str | Path | None = None,
) -> dict[str, Any]:
    """Profile ``artifact`` on every host over SSH in parallel; returns (and writes) one report.

    ``hosts`` are ``user@host[:port]`` or ``~/.ssh/config`` aliases; a ``hosts_file`` adds more
    (and may name the Python that has edgeprune on each). ``passed`` is True only when every host
    met the budget; a host that failed has ``ok: false`` and its ``error``.
    """
    from dataclasses import asdict

    from edgeprune.profiling.remote import HostSpec, load_hosts_file, profile_hosts

    t = resolve_target(target)
    specs = [HostSpec.parse(h) for h in hosts] + (load_hosts_file(hosts_file) if hosts_file else [])
    if not specs:
        raise EdgepruneError("no host given: --host user@host[:port] or --hosts-file FILE")
    results = profile_hosts(specs, artifact, t, ssh_config=ssh_config)
    rows = [asdict(r) for r in results]
    passed = all(r.ok and r.report.get("passed") for r in results) if results else False
    report = build_report(
        target=t, result=model_block(artifact=Path(artifact)), hosts=rows,
        errors=[r.error for r in results if r.error],
    )  # fmt: skip
    report["passed"] = passed
    if json_path is not None:
        write_report(report, json_path)
    return report
