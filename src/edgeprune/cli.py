"""The ``edgeprune`` command.

Exit codes: 0 success (and budget met), 1 error, 2 usage error, 3 finished but budget not met.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from edgeprune import __version__
from edgeprune.errors import EdgepruneError, OptionError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_OVER_BUDGET = 0, 1, 2, 3


def _cmd_prune(args: argparse.Namespace) -> int:
    from edgeprune.api import prune
    from edgeprune.report import format_table

    if args.ratio is None:
        return _prune_to_budget(args)
    if args.budget_ms is not None or args.speedup is not None:
        raise EdgepruneError(
            "--ratio excludes --budget-ms and --speedup: a fixed ratio, or a search to a budget"
        )
    if args.actions is not None:
        raise EdgepruneError(
            "--actions chooses what a budget search removes; --ratio removes channels only: drop one of the two"
        )
    if args.distill or args.teacher:
        raise EdgepruneError(
            "--distill and --teacher fine-tune a budget search's result; with --ratio give --budget-ms or "
            "--speedup instead, or drop them"
        )
    given = {
        "importance": args.importance,
        "allocation": args.allocation,
        "max_layer_ratio": args.max_layer_ratio,
        "native": args.native or None,
        "keep_heads": args.keep_heads or None,
    }
    outcome = prune(
        args.model,
        args.target,
        ratio=args.ratio,
        data=args.data,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        out=args.out,
        dry_run=args.dry_run,
        trust_checkpoint=args.trust_checkpoint,
        resume=args.resume,
        train_overrides={"progress": print, **({"device": args.device} if args.device else {})},
        **{k: v for k, v in given.items() if v is not None},
    )
    r = outcome.report
    if args.dry_run:
        print(r.table(only_changed=not args.all_layers))
        print()
    rows = [
        ["before", r.before["params"], r.before["macs"], outcome.baseline_metrics.get("map50_95")],
        ["after", r.after["params"], r.after["macs"], outcome.metrics.get("map50_95")],
    ]
    print(format_table(["model", "params", "MACs", "mAP50-95"], rows))
    print(
        f"pruned {r.config.describe()} in {r.seconds:.2f} s; "
        f"MACs at {r.imgsz} px: -{1 - r.after['macs'] / r.before['macs']:.1%}"
    )
    if args.dry_run:
        print("dry run: nothing was written")
    else:
        print(f"checkpoint: {outcome.checkpoint}\nreport:     {outcome.report_path}")
        config = Path(outcome.checkpoint).with_suffix(".yaml")
        if r.config.native and config.is_file():
            print(
                f"config:     {config} (plain Ultralytics retrains the checkpoint: YOLO(checkpoint).train())"
            )
    return EXIT_OK


def _prune_to_budget(args: argparse.Namespace) -> int:
    from edgeprune.api import prune_to_budget
    from edgeprune.report import format_table

    if args.dry_run:
        raise EdgepruneError("--dry-run plans a fixed --ratio; a budget search measures artifacts as it goes")
    if args.allocation not in (None, "global"):
        print("note: the budget search ranks channels globally (--allocation is ignored)")
    outcome = prune_to_budget(
        args.model, args.target, data=args.data, calib=args.calib, imgsz=args.imgsz, batch=args.batch, out=args.out,
        resume=args.resume, trust_checkpoint=args.trust_checkpoint, host=args.host, host_python=args.host_python,
        ssh_config=args.ssh_config, train_overrides={"device": args.device} if args.device else None,
        budget_ms=args.budget_ms, speedup=args.speedup, epochs=args.epochs, step_epochs=args.step_epochs,
        steps=args.steps, importance=args.importance, margin=args.margin, max_layer_ratio=args.max_layer_ratio,
        distill=args.distill or None, teacher=args.teacher, actions=args.actions, sensitivity=args.sensitivity, native=args.native or None,
        keep_heads=args.keep_heads or None,
    )  # fmt: skip
    result, b = outcome, outcome.baseline
    rows = [["baseline", b["params"], b["macs"], outcome.report["baseline"]["metrics"].get("map50_95"),
             b["measured_ms"], "-", "-"]]  # fmt: skip
    for st in result.steps:
        rows.append([f"step {st.step} ({st.action} {st.ratio:.0%})", st.params, st.macs, st.metrics.get("map50_95"),
                     st.measured_ms, st.predicted_ms, st.goal_ms])  # fmt: skip
    print()
    print(
        format_table(["model", "params", "MACs", "mAP50-95", "measured ms", "predicted ms", "goal ms"], rows)
    )
    line = f"final artifact {result.artifact}: {result.verdict.latency_ms:.2f} ms measured on its own"
    if result.final_in_frame:
        line += (
            f" ({result.final_in_frame:.2f} ms against the baseline as the search timed it; the baseline now "
            f"runs {result.final_check.reference_ms:.2f} ms, {result.drift - 1:+.0%} since the search began)"
        )
    print(line + f"; {result.predicted_ms:.2f} ms predicted, prediction error {result.prediction_error:.1%}")
    margin = result.margin
    if margin["setting"] == "auto" and "reference_p90_ms" in margin:
        print(
            f"margin auto: aimed {margin['fraction']:.0%} under the budget; the baseline ran "
            f"{margin['reference_p50_ms']:.2f} ms median, {margin['reference_p90_ms']:.2f} ms p90 over "
            f"{margin['reference_timings']} timings during the search"
        )
    print(outcome.message)
    print(f"checkpoint: {outcome.checkpoint}\nreport:     {outcome.report_path}")
    return EXIT_OK if outcome.passed else EXIT_OVER_BUDGET


def _cmd_analyze(args: argparse.Namespace) -> int:
    from edgeprune.api import analyze
    from edgeprune.report import format_table

    analysis = analyze(
        args.model, args.target, data=args.data, ratios=args.ratios, with_map=args.map, importance=args.importance,
        imgsz=args.imgsz, calib=args.calib, out=args.out, trust_checkpoint=args.trust_checkpoint,
    )  # fmt: skip
    ratio = max(analysis.ratios)
    ranked = sorted(analysis.groups, key=lambda g: g.cost_per_ms(ratio))
    rows = []
    for g in ranked:
        p = max(g.points, key=lambda p: p.ratio)
        rows.append([g.name, g.channels, f"{p.saved_ms:.3f}", f"{p.delta_loss:+.4f}", f"{g.cost_per_ms(ratio):.3g}"]
                    + ([f"{p.map50_95:.4f}"] if p.map50_95 is not None else []))  # fmt: skip
    head = ["group", "channels", f"ms saved at {ratio:.0%}", "proxy loss", "loss per ms"]
    print()
    print(format_table(head + (["mAP50-95"] if args.map else []), rows))
    if analysis.agreement and analysis.agreement.get("spearman_rho") is not None:
        print(
            f"proxy loss vs mAP50-95 over {analysis.agreement['candidates']} candidates: "
            f"Spearman's rho {analysis.agreement['spearman_rho']:.2f}"
        )
    print(f"cheapest groups first; analysis: {Path(args.out) / 'analysis.json'} ({analysis.seconds:.0f} s)")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from edgeprune.api import export
    from edgeprune.models.detections import describe_collapse, describe_parity

    result = export(
        args.model, args.target, imgsz=args.imgsz, calib=args.calib, calib_images=args.calib_images,
        recipe=args.recipe, data=args.data, out=args.out, trust_checkpoint=args.trust_checkpoint,
        max_drop=args.max_drop, end2end=args.end2end, say=print,
    )  # fmt: skip
    print(f"artifact: {result.artifact} ({result.size_mb:.2f} MB, {result.runtime} {result.precision})")
    q = result.details.get("quantization")
    if q:
        cal = result.details["calibration"]
        chosen = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in q.items() if k != "float_nodes")
        print(
            f"int8: recipe {result.details['recipe']}, {cal['images']} calibration images; {chosen}; "
            f"{q.get('float_nodes', 0)} nodes kept in float"
        )
    if result.parity:
        print(f"parity vs PyTorch: {describe_parity(result.parity)}")
        collapse = describe_collapse(result.parity)
        if collapse:
            print(f"warning: {collapse}")
    metrics = result.details.get("metrics")
    if metrics:
        pt, art = metrics["pytorch"]["map50_95"], metrics["artifact"]["map50_95"]
        print(
            f"mAP50-95: PyTorch {pt:.4f}, {result.precision} artifact {art:.4f} ({(art - pt) * 100:+.2f} points)"
        )
        print(f"report: {result.details['report']}")
    control = result.details.get("accuracy_control")
    if control:
        from edgeprune.accuracy_control import describe_control

        print(describe_control(control))
        if not control["within"]:
            return EXIT_OVER_BUDGET
    return EXIT_OK


def _cmd_profile(args: argparse.Namespace) -> int:
    from edgeprune.api import profile

    if args.host or args.hosts_file:
        if args.end_to_end:
            raise EdgepruneError("--end-to-end runs on this machine for now: drop --host/--hosts-file, or it")
        return _profile_remote(args)
    res = profile(
        args.artifact,
        args.target,
        json_path=args.json,
        end_to_end=args.end_to_end or None,
        images=args.images,
    )
    s = res.stats
    e2e = res.report.get("end_to_end")
    if e2e:
        stages = ", ".join(
            f"{name} p50 {st['p50']:.2f} / p90 {st['p90']:.2f} / p99 {st['p99']:.2f}"
            for name, st in e2e["stages"].items()
        )
        print(f"end to end ({e2e['images']} frames; {e2e['postprocess']}), ms: {stages}")
    print(
        f"{res.report['target']}: {s.n} runs, p50 {s.p50:.2f} ms, p90 {s.p90:.2f} ms, p99 {s.p99:.2f} ms, "
        f"mean {s.mean:.2f} ± {s.std:.2f} ms (cv {s.cv:.1%}); {res.environment.get('runtime')}, "
        f"threads {res.environment.get('threads') or 'default'}"
    )
    for warning in res.report.get("warnings", []):
        print(f"warning: {warning}")
    print(res.verdict.sentence())
    if args.json:
        print(f"report: {args.json}")
    return EXIT_OK if res.verdict.passed else EXIT_OVER_BUDGET


def _profile_remote(args: argparse.Namespace) -> int:
    from edgeprune.api import profile_remote
    from edgeprune.report import format_table

    report = profile_remote(
        args.artifact, args.target, args.host or [], hosts_file=args.hosts_file, ssh_config=args.ssh_config,
        json_path=args.json, time_limit_s=args.timeout,
    )  # fmt: skip
    rows = []
    for h in report["hosts"]:
        lat = (h["report"].get("result") or {}).get("latency_ms") or {}
        verdict = "-" if not h["ok"] else ("PASS" if h["report"].get("passed") else "FAIL")
        rows.append([h["host"], h["method"] or "-", lat.get("p50"), lat.get("p90"), lat.get("cv"), verdict])
    print(format_table(["host", "method", "p50 ms", "p90 ms", "cv", "budget"], rows))
    for h in report["hosts"]:
        for warning in h["warnings"]:
            print(f"warning: {h['host']}: {warning}")
        if h["error"]:
            print(f"error: {h['error']}", file=sys.stderr)
    b = report["budget"]
    print(
        f"budget {b['latency_ms']:.2f} ms {b['percentile']}: {'met on every host' if report['passed'] else 'not met everywhere'}"
    )
    if args.json:
        print(f"report: {args.json}")
    if any(h["error"] for h in report["hosts"]):
        return EXIT_ERROR
    return EXIT_OK if report["passed"] else EXIT_OVER_BUDGET


def _cmd_targets(args: argparse.Namespace) -> int:
    from edgeprune.report import format_table
    from edgeprune.targets import list_targets, load_target, validate_target_file

    if args.action == "list":
        rows = [
            [
                t.name,
                t.runtime,
                t.precision,
                t.imgsz,
                f"{t.budget.latency_ms:g} ms {t.budget.percentile}",
                t.device.name,
            ]
            for t in list_targets()
        ]
        print(format_table(["name", "runtime", "precision", "imgsz", "budget", "device"], rows))
    elif args.action == "show":
        print(load_target(args.name).summary())
    else:
        t = validate_target_file(Path(args.name))
        print(f"{args.name}: valid target {t.name!r}")
    return EXIT_OK


def _cmd_data(args: argparse.Namespace) -> int:
    from edgeprune.data import make_synthetic_dataset

    path = make_synthetic_dataset(
        args.out,
        preset=args.preset,
        n_train=args.n_train,
        n_val=args.n_val,
        imgsz=args.imgsz,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(f"dataset: {path}")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from edgeprune.api import run

    report = run(args.recipe)
    control = report.get("accuracy_control")
    if control and not control["within"]:
        from edgeprune.accuracy_control import describe_control

        print(describe_control(control))
        return EXIT_OVER_BUDGET
    return EXIT_OK if report["passed"] else EXIT_OVER_BUDGET


def _cmd_report(args: argparse.Namespace) -> int:
    from edgeprune.files import check_report_path
    from edgeprune.report.html import HTML_NAME, load_run, write_html

    runs = [load_run(path) for path in args.runs]
    out = Path(args.out) if args.out else runs[0].folder / HTML_NAME
    if out.is_dir():
        out = out / HTML_NAME
    check_report_path(out, "--out")
    print(f"report: {write_html(runs, out)}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from edgeprune.demo import run_demo

    report = run_demo(out=args.out, quick=args.quick, retrain=args.retrain)
    return EXIT_OK if report["passed"] else EXIT_OVER_BUDGET


def _margin(text: str) -> float | str:
    """``--margin``: 'auto' or a number (its range is checked by the search's config)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a fraction such as 0.05, or 'auto'; got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from edgeprune.data.synthetic import PRESETS
    from edgeprune.pruning.importance import ALLOCATIONS, IMPORTANCE
    from edgeprune.pruning.options import (
        DISTILL_DEFAULT,
        DISTILL_MODES,
        FINETUNE_BATCH,
        SEARCH_ACTION_NAMES,
        SENSITIVITY_RATIOS,
        PruneConfig,
        SearchConfig,
        search_importance,
    )

    parser = argparse.ArgumentParser(
        prog="edgeprune",
        description="Prune, export and profile object detectors against a device's latency budget.",
    )
    parser.add_argument("--version", action="version", version=f"edgeprune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--no-lock",
        action="store_true",
        help="write into an output folder even while another live run holds it",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def target_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--target", "-t", required=True, help="target name (see `edgeprune targets list`) or YAML path"
        )

    def trust_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--trust-checkpoint",
            action="store_true",
            help="load the checkpoint with plain pickle, skipping the allow-list: it can run any code "
            "the file contains, so only for files you trust",
        )

    p = sub.add_parser("prune", help="remove channels with the dependency graph, optionally fine-tune")
    p.add_argument("model", help="Ultralytics checkpoint (.pt) or model config (e.g. yolov8n.yaml)")
    target_arg(p)
    p.add_argument(
        "--ratio",
        type=float,
        help="fraction of channels removed, 0..1: from each group (uniform) or of all channels (global); "
        "without it, edgeprune searches the widths that meet the latency budget",
    )
    p.add_argument(
        "--budget-ms",
        type=float,
        help="latency to meet, measured on the target's runtime and precision (default: the target's budget)",
    )
    p.add_argument(
        "--speedup",
        type=float,
        help="instead of --budget-ms: run this many times faster than the unpruned model, both measured on "
        "the target's runtime and precision, side by side (e.g. 2)",
    )
    p.add_argument("--steps", type=int, help=f"budget search: pruning steps (default {SearchConfig.steps})")
    p.add_argument(
        "--actions", type=lambda text: tuple(a.strip() for a in text.split(",") if a.strip()),
        help=f"budget search: what each step may remove, comma-separated: {', '.join(SEARCH_ACTION_NAMES)} "
        "(channels, whole repeats of blocks); with both, candidates are compared by the loss on a few validation "
        f"batches (needs --data; default {','.join(SearchConfig.actions)})",
    )  # fmt: skip
    p.add_argument(
        "--margin",
        type=_margin,
        help=f"budget search: aim this fraction under the budget (default {SearchConfig.margin}), or 'auto': as far under "
        "as the baseline's own timings ran slow (p90 over median) during the search (not with --host)",
    )
    p.add_argument(
        "--step-epochs",
        type=int,
        help="budget search: fine-tuning epochs after each step but the last",
    )
    p.add_argument(
        "--distill", nargs="?", const=True, choices=DISTILL_MODES, metavar="MODE",
        help="fine-tune with distillation from the unpruned model: its features, its outputs (class scores and "
        f"box distributions per anchor) or both ({', '.join(DISTILL_MODES)}; alone: {DISTILL_DEFAULT})",
    )  # fmt: skip
    p.add_argument(
        "--teacher", help="budget search: distil from this checkpoint instead of the unpruned model (a larger "
        "model, or the same trained longer; same classes and head); implies --distill",
    )  # fmt: skip
    p.add_argument(
        "--sensitivity", help="budget search: analysis.json of `edgeprune analyze` (same model and target): "
        "rank groups by measured accuracy lost per ms saved instead of channel importance alone",
    )  # fmt: skip
    p.add_argument(
        "--native", action="store_true", help="prune only to widths and repeats the model's own config can say, "
        "and rewrite it (OUT/pruned.yaml), so plain Ultralytics retrains the pruned model: YOLO('pruned.pt').train()",
    )  # fmt: skip
    p.add_argument(
        "--keep-heads", action="store_true", help="attention blocks (YOLOv10/11/12/26) keep all their heads; by default "
        "an attention's stream loses whole heads, the least important first",
    )  # fmt: skip
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed run in OUT: a budget search from OUT/search/state.json (a step's "
        "fine-tuning from its last finished epoch), a ratio prune's fine-tuning from its last finished epoch",
    )
    p.add_argument(
        "--device",
        help="fine-tuning device as Ultralytics takes it: cpu, 0, or 0,1 for multi-GPU (default: GPU 0 if any)",
    )
    p.add_argument("--calib", help="INT8 targets: calibration images (folder or data.yaml; default: --data)")
    p.add_argument(
        "--host", help="budget search: measure every candidate on this SSH host (the device itself)"
    )
    p.add_argument("--host-python", default="python3", help="the Python that has edgeprune on --host")
    p.add_argument("--ssh-config", help="OpenSSH client config to read (default ~/.ssh/config)")
    p.add_argument(
        "--importance",
        help=f"channel importance criterion: {', '.join(IMPORTANCE.names())}; default {PruneConfig.importance}, or "
        f"{search_importance('data')} for a "
        "budget search with --data (taylor's gradients come from a few batches of the train split)",
    )
    p.add_argument(
        "--allocation",
        choices=ALLOCATIONS,
        help="uniform: the same ratio for every group; global: rank all channels together "
        f"(default {PruneConfig.allocation})",
    )
    p.add_argument(
        "--max-layer-ratio",
        type=float,
        help="no layer loses more than this fraction of its channels (default "
        f"{PruneConfig.max_layer_ratio}; {SearchConfig.max_layer_ratio} per budget-search step)",
    )
    p.add_argument("--data", help="Ultralytics data.yaml: measure mAP before/after and fine-tune on it")
    p.add_argument("--epochs", type=int, default=0, help="fine-tuning epochs after pruning (0 = none)")
    p.add_argument("--imgsz", type=int, help="image size (default: the target's)")
    p.add_argument(
        "--batch",
        type=int,
        default=FINETUNE_BATCH,
        help=f"batch size for fine-tuning and validation (default {FINETUNE_BATCH})",
    )
    p.add_argument("--out", default="edgeprune-out", help="output folder (pruned.pt, prune.json)")
    p.add_argument("--dry-run", action="store_true", help="print the per-layer plan and change nothing")
    p.add_argument("--all-layers", action="store_true", help="with --dry-run, list unchanged layers too")
    trust_arg(p)
    p.set_defaults(func=_cmd_prune)

    p = sub.add_parser(
        "analyze",
        help="measure what pruning each layer group alone costs in accuracy and saves in measured ms",
    )
    p.add_argument("model", help="Ultralytics checkpoint (.pt) or model config")
    target_arg(p)
    p.add_argument(
        "--data", required=True, help="Ultralytics data.yaml: the accuracy proxy (validation loss) and mAP"
    )
    p.add_argument(
        "--ratios", type=lambda text: tuple(float(r) for r in text.split(",") if r.strip()),
        help=f"fractions of each group's channels removed, comma-separated (default {','.join(map(str, SENSITIVITY_RATIOS))})",
    )  # fmt: skip
    p.add_argument("--map", action="store_true", help="also measure mAP50-95 of every candidate (slower)")
    p.add_argument(
        "--importance", help=f"which channels of a group go first (default {search_importance('data')})"
    )
    p.add_argument("--imgsz", type=int, help="image size (default: the target's)")
    p.add_argument("--calib", help="INT8 targets: calibration images of each candidate (default: --data)")
    p.add_argument("--out", default="edgeprune-out", help="output folder (analysis.json)")
    trust_arg(p)
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser("export", help="export to the target's runtime and precision, with a parity check")
    p.add_argument("model", help="Ultralytics checkpoint (.pt) or model config")
    target_arg(p)
    p.add_argument("--imgsz", type=int, help="image size (default: the target's)")
    p.add_argument(
        "--calib", help="INT8 calibration images: an image folder or a data.yaml (its train split)"
    )
    p.add_argument("--calib-images", type=int, help="number of calibration images (default: the recipe's)")
    p.add_argument("--recipe", help="calibration recipe name or YAML (default: the target's)")
    p.add_argument("--data", help="data.yaml: measure mAP50-95 of the PyTorch model and of the artifact")
    p.add_argument(
        "--max-drop", type=float, metavar="POINTS",
        help="INT8, with --data: keep the most sensitive layers in float until mAP50-95 drops at most "
        "this many points (exit 3 if it cannot)",
    )  # fmt: skip
    p.add_argument(
        "--end2end", action="store_true", help="NMS-free heads (YOLOv10, YOLO26): export the one-to-one branch, "
        "so the artifact returns final detections and no NMS follows",
    )  # fmt: skip
    p.add_argument("--out", default="edgeprune-out", help="output folder")
    trust_arg(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("profile", help="measure latency with the target's runtime and judge the budget")
    p.add_argument("artifact", help="exported model (.onnx, ...)")
    target_arg(p)
    p.add_argument("--json", help="write report.json here")
    p.add_argument(
        "--host", action="append", help="profile on this SSH host instead (user@host[:port] or an ~/.ssh/config "
        "alias); repeat for several, run in parallel",
    )  # fmt: skip
    p.add_argument(
        "--hosts-file", help="hosts, one per line, or YAML: - {host: jetson1, python: /opt/venv/bin/python}"
    )
    p.add_argument("--ssh-config", help="OpenSSH client config to read (default ~/.ssh/config)")
    p.add_argument(
        "--timeout", type=float, default=600.0, metavar="SECONDS",
        help="over SSH: stop a host's profile after this long and report it failed (default 600)",
    )  # fmt: skip
    p.add_argument(
        "--end-to-end", action="store_true", help="time each frame's letterbox, inference and decode + NMS "
        "on real --images, and judge the budget on the total (default when the target's budget scope is end_to_end)",
    )  # fmt: skip
    p.add_argument(
        "--images", help="--end-to-end: real frames, an image folder or a data.yaml (its val split)"
    )
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser(
        "run", help="the whole pipeline (prune, fine-tune, export, profile) from a recipe file"
    )
    p.add_argument("recipe", help="recipe YAML (see edgeprune/recipe.py or the README)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "report", help="draw report.html from a run's JSON files, or compare several runs in one page"
    )
    p.add_argument("runs", nargs="+", metavar="DIR_OR_JSON",
                   help="output folders or report JSONs; the first is shown in full, the others compared")  # fmt: skip
    p.add_argument("--out", help="the page to write (default: report.html in the first run's folder)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("targets", help="list, show or validate target profiles")
    tsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    tsub.add_parser("list", help="all shipped targets")
    tsub.add_parser("show", help="one target in full").add_argument("name", help="target name or YAML path")
    tsub.add_parser("validate", help="check a target YAML file").add_argument("name", metavar="FILE")
    p.set_defaults(func=_cmd_targets)

    p = sub.add_parser(
        "data", help="generate the synthetic detection dataset (offline stand-in for real data)"
    )
    p.add_argument("--out", required=True, help="dataset folder (data.yaml is written inside)")
    presets = {name: PRESETS.get(name) for name in PRESETS.names()}
    p.add_argument(
        "--preset", choices=list(presets), default="easy",
        help="; ".join(f"{n}: {k.description}" for n, k in presets.items()).replace("%", "%%") + " (default easy)",
    )  # fmt: skip
    for flag, attr, what in (("--n-train", "n_train", "training images"), ("--n-val", "n_val", "validation images"),
                             ("--imgsz", "imgsz", "image side in pixels")):  # fmt: skip
        defaults = ", ".join(f"{n} {getattr(k, attr)}" for n, k in presets.items())
        p.add_argument(flag, type=int, help=f"{what} (default: the preset's: {defaults})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("demo", help="the whole flow offline on this machine, on synthetic data")
    p.add_argument("--out", default="demo-out", help="output folder (report.json, models, data)")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run (about a minute)")
    p.add_argument(
        "--retrain", action="store_true", help="train the baseline here instead of using the shipped one"
    )
    p.set_defaults(func=_cmd_demo)
    return parser


def _flag(option: str) -> str:
    """The flag that sets a library option: ``max_layer_ratio`` -> ``--max-layer-ratio``."""
    return "--epochs" if option == "final_epochs" else "--" + option.replace("_", "-")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from edgeprune.files import NO_LOCK_ENV

    locking = os.environ.get(NO_LOCK_ENV)
    if args.no_lock:
        os.environ[NO_LOCK_ENV] = "1"
    try:
        return _run(args)
    finally:  # a later call in this process (a notebook, the tests) locks again
        if locking is None:
            os.environ.pop(NO_LOCK_ENV, None)
        else:
            os.environ[NO_LOCK_ENV] = locking


def _run(args: argparse.Namespace) -> int:
    """The command, with an ``EdgepruneError`` printed as one line (a traceback only with ``-v``)."""
    from edgeprune.progress import enable_bars

    enable_bars(sys.stdout.isatty() and sys.stderr.isatty())  # a pipe or a CI log gets the lines alone
    try:
        return args.func(args)
    except EdgepruneError as e:
        if args.verbose:
            raise
        message = e.with_names(_flag) if isinstance(e, OptionError) else str(e)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
