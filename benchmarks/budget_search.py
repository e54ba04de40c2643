"""Budget search against the two obvious alternatives, at the same latency budget and fine-tuning.

    .venv/bin/python benchmarks/budget_search.py [--base-epochs 120] [--epochs 40] [--work bench-budget]
        [--margin auto] [--match-small] [--distill] [--step-epochs 0] [--reuse-a]
        [--json benchmarks/results/budget_search.json]

On the synthetic set (the demo's: 400 train / 100 val images at 160 px, 6 classes):

0. a YOLOv8s baseline trained from scratch for ``--base-epochs`` epochs (kept in ``--work`` and
   reused by later runs, as are (b) at the same budget and (c));
1. the budget: 50% of the baseline's p50 measured on ``cpu-ort-fp32`` at 160 px, 1 thread (the
   demo's setting: single-threaded timing is the stable one on this 2-vCPU VM);
2. (a) ``prune_to_budget``: 3 measured steps aiming ``--margin`` under the budget (default
       ``auto``: as far under as the baseline ran slow during the search), then ``--epochs``
       fine-tuning epochs;
   (b) uniform L2 pruning at the ratio whose *measured* latency meets the same budget (bisection
       on the ratio, each candidate exported and timed against the baseline), then ``--epochs``;
   (c) YOLOv8n, the next smaller official size, trained from scratch for ``--base-epochs +
       --epochs`` epochs (the same total as the pruned models saw);
   (a@c), with ``--match-small``: the same search with ``--speedup`` at (c)'s ratio to the
       baseline (both artifacts timed alternately, as ``edgeprune profile`` times) and the default
       3% margin: the pruned YOLOv8s against YOLOv8n at YOLOv8n's own speed, whatever the speed of
       the machine in the meantime;
3. every final artifact timed in one interleaved run (so the latencies compare under one load),
   mAP50-95 from Ultralytics' validator, and (a)'s predicted vs measured latency;
4. (a)'s artifact re-measured five times by ``edgeprune profile`` in separate processes, each
   followed by the baseline's artifact profiled the same way (how fast the machine ran then).

Not run by CI: about 1.5 hours on this machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import yaml


def other_arms(args, work, data, s, target, base, base_ckpt, budget, meter, trained, timed, final_epochs):
    """(b), (c) and, with --match-small, (a@c): their checkpoints by arm name, and (a@c)'s outcome
    and speed-up (None without it)."""
    from edgeprune.api import prune_to_budget
    from edgeprune.exporting import export_detector
    from edgeprune.models import load_model
    from edgeprune.pruning import PruneConfig, prune_detector
    from edgeprune.pruning.options import FINETUNE_RECIPE

    # (b) uniform L2 at the ratio whose measured latency meets the budget
    def uniform_at(ratio: float):
        det = base.clone()
        prune_detector(det, PruneConfig(ratio, "l2", "uniform", 0.8, target.round_to), imgsz=s.imgsz)
        return det

    uniform_ckpt, uniform_record = work / "b" / "uniform.pt", work / "b" / "uniform.json"
    kept = json.loads(uniform_record.read_text()) if uniform_record.is_file() else {}
    same = {"budget_ms": budget, "epochs": args.epochs, "round_to": target.round_to}
    if all(kept.get(k) == v for k, v in same.items()) and uniform_ckpt.is_file():
        ratio_b = kept["ratio"]  # (b) does not depend on the search: reused by later runs at this budget
        print(f"(b) reused: uniform ratio {ratio_b:.3f} from {uniform_record}", flush=True)
    else:
        lo, hi, chosen = 0.0, 0.75, None
        for _ in range(7):
            mid = round((lo + hi) / 2, 3)
            ms = meter.measure(uniform_at(mid), f"uniform-{mid}")
            print(f"uniform ratio {mid:.3f}: {ms:.2f} ms", flush=True)
            if ms <= budget:
                hi, chosen = mid, (mid, ms)
            else:
                lo = mid
        ratio_b = chosen[0] if chosen else hi
        uniform = uniform_at(ratio_b)
        timed(
            "b-uniform-finetune",
            lambda: uniform.train(
                data, epochs=args.epochs, imgsz=s.imgsz, batch=s.batch, out_dir=work / "b", name="finetune",
                **FINETUNE_RECIPE,
            ),
        )  # fmt: skip
        uniform.save(uniform_ckpt)
        uniform_record.write_text(json.dumps({**same, "ratio": ratio_b}))

    # (c) the next smaller official size, trained for the same total epochs
    small_ckpt = trained("yolov8n.yaml", args.base_epochs + args.epochs, "yolov8n-scratch")

    arms = {
        f"(b) uniform L2 at ratio {ratio_b:.3f}": uniform_ckpt,
        f"(c) YOLOv8n, {args.base_epochs + args.epochs} epochs": small_ckpt,
    }
    matched, speedup_c = None, None
    if args.match_small:  # (a@c): the search at (c)'s speed-up over the baseline, timed side by side
        small_artifact = export_detector(load_model(small_ckpt), target, work / "probes", "yolov8n").artifact
        ratio_c = meter.check(small_artifact, rounds=5).ratio
        speedup_c = round(1 / ratio_c, 3)
        print(
            f"(a@c): speed-up {speedup_c:.3f}: YOLOv8n runs {ratio_c:.3f}x the baseline's latency", flush=True
        )
        matched = timed(
            "a-at-c-search",
            lambda: prune_to_budget(
                base_ckpt, target, speedup=speedup_c, data=data, epochs=final_epochs, step_epochs=args.step_epochs, steps=3,
                out=work / "a-at-c", distill=args.distill, train_overrides=FINETUNE_RECIPE,
                say=lambda line: print(line, flush=True),
            ),
        )  # fmt: skip
        how = (", distilled" if args.distill else "") + (
            f", {args.step_epochs}/step" if args.step_epochs else ""
        )
        arms[f"(a@c) budget search at (c)'s latency{how}"] = matched.checkpoint
    return arms, matched, speedup_c


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-epochs", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument(
        "--fraction", type=float, default=0.5, help="budget as a fraction of the baseline's p50"
    )
    parser.add_argument(
        "--budget-ms", type=float, help="fix the budget (e.g. to an earlier run's) instead of deriving it"
    )
    parser.add_argument("--margin", default="auto", help="(a)'s margin: a fraction or 'auto' (default)")
    parser.add_argument(
        "--match-small", action="store_true", help="also run the search at (c)'s latency: arm (a@c)"
    )
    parser.add_argument(
        "--distill", action="store_true", help="the searches fine-tune with distillation from the baseline"
    )
    parser.add_argument(
        "--step-epochs",
        type=int,
        default=0,
        help="the searches fine-tune this many epochs after each of their 3 steps but the last, and "
        "--epochs minus 2x this after it: the same total",
    )
    parser.add_argument(
        "--reuse-a",
        action="store_true",
        help="take (a) from WORK/a/prune.json (same budget and round_to) instead of searching again",
    )
    parser.add_argument(
        "--only-a", action="store_true", help="the baseline and (a) alone: a check of the search on its own"
    )
    parser.add_argument("--work", type=Path, default=Path("bench-budget"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    margin = args.margin if args.margin == "auto" else float(args.margin)
    final_epochs = args.epochs - 2 * args.step_epochs  # the searches' 3 steps: the same total epochs
    if final_epochs < 1:
        parser.error("--step-epochs leaves no final epochs: at most (--epochs - 1) / 2")

    from edgeprune.api import prune_to_budget, resolve_target
    from edgeprune.data import make_synthetic_dataset
    from edgeprune.demo import DemoSettings, train_baseline_from_scratch
    from edgeprune.exporting import export_detector
    from edgeprune.models import load_model
    from edgeprune.profiling import collect_environment, profiled, sample_interleaved
    from edgeprune.profiling.meters import ArtifactMeter
    from edgeprune.pruning.options import FINETUNE_RECIPE
    from edgeprune.runtimes import get_runtime

    work = args.work.resolve()
    s = DemoSettings()
    data = make_synthetic_dataset(work / "data", n_train=s.n_train, n_val=s.n_val, imgsz=s.imgsz, seed=s.seed)
    target = resolve_target("cpu-ort-fp32", imgsz=s.imgsz).with_overrides(threads=1)
    seconds: dict[str, float] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        result = fn()
        seconds[name] = round(time.perf_counter() - t0, 1)
        print(f"[{name}] done in {seconds[name]:.0f} s", flush=True)
        return result

    def trained(model: str, epochs: int, name: str) -> Path:
        ckpt = work / f"{name}.pt"
        if not ckpt.is_file():
            settings = replace(s, model=model, base_epochs=epochs)
            det = timed(name, lambda: train_baseline_from_scratch(settings, data, work / name))
            det.save(ckpt, {"epochs": epochs})
        return ckpt

    base_ckpt = trained("yolov8s.yaml", args.base_epochs, "yolov8s-baseline")
    base = load_model(base_ckpt)
    meter = ArtifactMeter(target, work / "probes")
    base_ms = meter.measure(base, "baseline")
    budget = args.budget_ms or round(args.fraction * base_ms, 3)
    rule = (
        f"given; the baseline measured {base_ms:.2f} ms"
        if args.budget_ms
        else f"{args.fraction:.0%} of the baseline's measured {base_ms:.2f} ms"
    )
    print(f"baseline YOLOv8s: budget {budget:.3f} ms p50 ({rule})", flush=True)

    # (a) edgeprune's search
    kept_a = work / "a" / "prune.json"
    report_a = json.loads(kept_a.read_text()) if args.reuse_a and kept_a.is_file() else {}
    if report_a.get("budget", {}).get("latency_ms") == budget and (
        report_a["search"].get("round_to") == target.round_to
    ):
        print(f"(a) reused from {kept_a}", flush=True)
        outcome = SimpleNamespace(
            report=report_a, checkpoint=Path(report_a["result"]["checkpoint"]),
            artifact=Path(report_a["result"]["artifact"]),
        )  # fmt: skip
    else:
        outcome = timed(
            "a-search",
            lambda: prune_to_budget(
                base_ckpt, target, budget_ms=budget, data=data, epochs=final_epochs, step_epochs=args.step_epochs, steps=3, out=work / "a",
                margin=margin, distill=args.distill, train_overrides=FINETUNE_RECIPE,
                say=lambda line: print(line, flush=True),
            ),
        )  # fmt: skip

    arms = {
        "baseline YOLOv8s": base_ckpt,
        f"(a) edgeprune budget search, margin {args.margin}": outcome.checkpoint,
    }
    matched, speedup_c = None, None
    if not args.only_a:
        more, matched, speedup_c = other_arms(
            args, work, data, s, target, base, base_ckpt, budget, meter, trained, timed, final_epochs
        )
        arms.update(more)
    rows, calls = [], {}
    for i, (name, ckpt) in enumerate(arms.items()):
        det = load_model(ckpt)
        artifact = export_detector(det, target, work / "final", f"arm{i}").artifact
        session = get_runtime(target.runtime).load(artifact, threads=1)
        calls[name] = session.runner()
        counts = det.count(s.imgsz)
        rows.append({"arm": name, "params": counts["params"], "macs": counts["macs"],
                     "map50_95": det.evaluate(data, imgsz=s.imgsz, batch=s.batch)["map50_95"]})  # fmt: skip
    # each arm timed as `edgeprune profile` times it, in alternating rounds
    per_round = sample_interleaved(calls, rounds=5, **profiled(target.profiling))
    base_rounds = [float(np.median(r)) for r in per_round["baseline YOLOv8s"]]
    for row in rows:
        rounds = [float(np.median(r)) for r in per_round[row["arm"]]]
        row["p50_ms"] = float(np.median([x for r in per_round[row["arm"]] for x in r]))
        row["p50_ms_rounds"] = rounds
        # median over rounds of arm / baseline: each round's timings are neighbours in time
        row["vs_baseline"] = float(np.median([a / b for a, b in zip(rounds, base_rounds, strict=True)]))
        row["meets_budget"] = row["p50_ms"] <= budget
    search = outcome.report["search"]
    probe_errors = [abs(p["predicted_ms"] - p["measured_ms"]) / p["measured_ms"] for p in search["probes"]]
    print(f"\nbudget {budget:.3f} ms p50 ({rule}), cpu-ort-fp32, 160 px, 1 thread")
    print(f"{'arm':<40} {'params M':>8} {'GMACs':>6} {'mAP50-95':>8} {'p50 ms':>7} {'x base':>6}  budget")
    for row in rows:
        print(
            f"{row['arm']:<40} {row['params'] / 1e6:>8.2f} {row['macs'] / 1e9:>6.3f} {row['map50_95']:>8.4f} "
            f"{row['p50_ms']:>7.3f} {row['vs_baseline']:>6.3f}  {'met' if row['meets_budget'] else 'missed'}"
        )
    print(
        f"(a) predicted {search['predicted_ms']:.3f} ms, measured in the search {search['measured_ms_in_search']:.3f} ms, "
        f"on its own {search['measured_ms_final']:.3f} ms; baseline {search['reference_ms']:.3f} ms at the start, "
        f"{search['reference_ms_final']:.3f} ms at the end: prediction error {search['prediction_error']:.1%} "
        f"({search['prediction_error_uncorrected']:.1%} without the drift); latency model's error over "
        f"{len(probe_errors)} probes: median {np.median(probe_errors):.1%}, max {max(probe_errors):.1%}"
    )
    print(f"(a) margin: {json.dumps(search['margin'])}")
    # the acceptance check: the final artifact re-measured by `edgeprune profile` in separate processes
    target_file = work / "target.yaml"
    budgeted = target.with_overrides(name="cpu-ort-fp32-bench", budget={"latency_ms": budget})
    target_file.write_text(yaml.safe_dump(budgeted.model_dump(mode="json"), sort_keys=False))

    def profile(artifact: Path, report: Path) -> dict:
        subprocess.run(
            [str(Path(sys.executable).parent / "edgeprune"), "profile", str(artifact), "--target",
             str(target_file), "--json", str(report)], check=False, capture_output=True,
        )  # fmt: skip
        return json.loads(report.read_text())

    separate = []
    for i in range(5):
        got = profile(outcome.artifact, work / f"profile{i}.json")
        ref = profile(work / "final" / "arm0.onnx", work / f"profile{i}-baseline.json")
        separate.append({
            "p50_ms": got["result"]["latency_ms"]["p50"], "passed": got["verdict"]["passed"],
            "baseline_p50_ms": ref["result"]["latency_ms"]["p50"],
        })  # fmt: skip
    print("(a) re-measured by `edgeprune profile` in separate processes, each followed by the baseline:")
    for r in separate:
        print(
            f"  {r['p50_ms']:.3f} ms {'PASS' if r['passed'] else 'FAIL'}; baseline {r['baseline_p50_ms']:.3f} ms "
            f"({r['baseline_p50_ms'] / base_ms:.2f}x its timing at the start)"
        )
    if args.json:
        out = {
            "budget_ms": budget, "baseline_ms": base_ms, "rows": rows, "search": search, "seconds": seconds,
            "profile_separate": separate, "margin": args.margin, "distill": args.distill,
            "step_epochs": args.step_epochs, "final_epochs": final_epochs,
            "probe_error_median": float(np.median(probe_errors)), "probe_error_max": float(max(probe_errors)),
            "matched_small": matched.report["search"] if matched else None,
            "matched_small_speedup": speedup_c if matched else None,
            "base_epochs": args.base_epochs, "epochs": args.epochs,
            "environment": collect_environment(get_runtime(target.runtime).environment(), 1),
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
