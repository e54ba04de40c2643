"""What does pruning the larger model buy on the hard preset? Every arm fine-tuned the same epochs.

    .venv/bin/python benchmarks/hard_benchmark.py --baseline bench-hard/yolov8s.pt \
        --small bench-hard/yolov8n.pt --data bench-hard/data/data.yaml [--epochs 12]
        [--arms baseline-ft,a,a-depth,c,a@c,b,a-kd,a-native,a-sens,int8] [--analysis analysis.json]
        [--work bench-hard-arms] [--json benchmarks/results/hard_benchmark.json]

``--baseline`` and ``--small`` are ``hard_preset.py``'s YOLOv8s and YOLOv8n (trained alike from
scratch). Timing: ``cpu-ort-fp32`` at the data's image size, 1 thread. Arms (each fine-tuned
``--epochs`` epochs with the product's recipe, ``FINETUNE_RECIPE``):

- ``baseline-ft``: the baseline itself fine-tuned ``--epochs`` more, as every other arm is: (a)'s
  accuracy kept is also read against it, since a baseline that has not converged would flatter
  the pruned arms (they get epochs it did not);
- ``a``: ``prune_to_budget`` at 2x the baseline's speed (3 steps, widths, Taylor ranking);
- ``a-depth``: the same with ``actions=("width", "depth")``;
- ``a-kd``: the same as ``a`` with the default distillation (``distill=True``);
- ``a-native``: the same as ``a`` in native mode (``native=True``: widths Ultralytics' config can
  say, so the result retrains with plain Ultralytics): what the constraints cost;
- ``a-sens``: the same as ``a`` ranking groups by ``--analysis`` (``edgeprune analyze``; made in
  ``--work`` when not given);
- ``b``: uniform L2 pruning at the ratio whose measured latency meets (a)'s budget;
- ``c``: YOLOv8n, fine-tuned ``--epochs`` more: the same total epochs as the pruned models;
- ``a@c``: the search at YOLOv8n's measured speed-up over the baseline;
- ``int8``: the search on ``cpu-ort-int8`` at 2x, each probe the INT8 artifact; its row gives the
  INT8 artifact's mAP and its speed against the INT8 baseline.

Every FP32 arm's artifact is then timed in one interleaved run against the baseline (5 rounds),
mAP50-95 from Ultralytics' validator. Each arm's result is kept in ``--work`` and reused. Not run
by CI.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SPEEDUP = 2.0


class Bench:
    """What the arms share: the data, the target, the baseline, the meter and the epochs."""

    def __init__(self, args: argparse.Namespace):
        from edgeprune.api import resolve_target
        from edgeprune.models import load_model
        from edgeprune.profiling.meters import ArtifactMeter

        self.args, self.work, self.data, self.epochs = args, args.work.resolve(), args.data, args.epochs
        self.imgsz = int(json.loads((args.data.parent / "synthetic.json").read_text())["imgsz"])
        self.target = resolve_target("cpu-ort-fp32", imgsz=self.imgsz).with_overrides(threads=1)
        self.baseline = load_model(args.baseline)
        self.meter = ArtifactMeter(self.target, self.work / "probes")
        self.meter.measure(self.baseline, "baseline")

    def say(self, line: str) -> None:
        print(line, flush=True)

    def search(self, name: str, target: Any = None, **options: Any) -> dict[str, Any]:
        from edgeprune.api import prune_to_budget

        options.setdefault("speedup", SPEEDUP)
        outcome = prune_to_budget(
            self.args.baseline, target or self.target, data=self.data, epochs=self.epochs, steps=3,
            out=self.work / name, say=self.say, **options,
        )  # fmt: skip
        search = outcome.report["search"]
        return {
            "checkpoint": str(outcome.checkpoint), "artifact": str(outcome.artifact), "passed": outcome.passed,
            "search_steps": [{"action": s["action"], "ratio": s["ratio"], "measured_ms": s["measured_ms"],
                              "removed": s.get("removed", [])} for s in search["steps"]],
            "budget_ms": outcome.report["budget"]["latency_ms"], "measured_ms_final": search["measured_ms_final"],
        }  # fmt: skip

    def finetune(self, det: Any, name: str) -> None:
        from edgeprune.pruning.options import FINETUNE_RECIPE

        det.train(
            self.data, epochs=self.epochs, imgsz=self.imgsz, batch=16, out_dir=self.work / name, name="finetune",
            progress=self.say, **FINETUNE_RECIPE,
        )  # fmt: skip


def arm_b(bench: Bench) -> dict[str, Any]:
    """Uniform L2 at the ratio whose measured latency meets (a)'s budget (bisection)."""
    from edgeprune.pruning import PruneConfig, prune_detector

    def uniform_at(ratio: float) -> Any:
        det = bench.baseline.clone()
        prune_detector(
            det, PruneConfig(ratio, "l2", "uniform", 0.8, bench.target.round_to), imgsz=bench.imgsz
        )
        return det

    budget = _arm_record(bench, "a")["budget_ms"]
    lo, hi, chosen = 0.0, 0.75, None
    for _ in range(7):
        mid = round((lo + hi) / 2, 3)
        ms = bench.meter.measure(uniform_at(mid), f"uniform-{mid}")
        bench.say(f"uniform ratio {mid:.3f}: {ms:.2f} ms (budget {budget:.2f})")
        if ms <= budget:
            hi, chosen = mid, mid
        else:
            lo = mid
    ratio = chosen if chosen is not None else hi
    det = uniform_at(ratio)
    bench.finetune(det, "b")
    ckpt = det.save(bench.work / "b" / "uniform.pt", {"ratio": ratio})
    return {"checkpoint": str(ckpt), "ratio": ratio, "budget_ms": budget}


def arm_baseline_ft(bench: Bench) -> dict[str, Any]:
    """The baseline, fine-tuned as many epochs as the pruned models."""
    det = bench.baseline.clone()
    bench.finetune(det, "baseline-ft")
    path = bench.work / "baseline-ft" / f"{bench.args.baseline.stem}-ft{bench.epochs}.pt"
    return {"checkpoint": str(det.save(path, {"extra_epochs": bench.epochs}))}


def arm_c(bench: Bench) -> dict[str, Any]:
    """YOLOv8n, fine-tuned as many epochs as the pruned models."""
    from edgeprune.models import load_model

    det = load_model(bench.args.small)
    bench.finetune(det, "c")
    return {"checkpoint": str(det.save(bench.work / "c" / "yolov8n.pt", {"extra_epochs": bench.epochs}))}


def arm_a_at_c(bench: Bench) -> dict[str, Any]:
    """The search at YOLOv8n's measured speed-up (both artifacts timed alternately)."""
    from edgeprune.exporting import export_detector
    from edgeprune.models import load_model

    small = load_model(bench.args.small)
    artifact = export_detector(small, bench.target, bench.work / "probes", "yolov8n").artifact
    ratio = bench.meter.check(artifact, rounds=5).ratio
    speedup = round(1 / ratio, 3)
    bench.say(f"(a@c): YOLOv8n runs {ratio:.3f}x the baseline's latency: speed-up {speedup}")
    return {**bench.search("a@c", speedup=speedup), "speedup": speedup}


def arm_a_sens(bench: Bench) -> dict[str, Any]:
    from edgeprune.api import analyze

    path = bench.args.analysis or bench.work / "analysis" / "analysis.json"
    if not Path(path).is_file():
        t0 = time.perf_counter()
        analyze(bench.args.baseline, bench.target, data=bench.data, out=Path(path).parent, say=bench.say)
        bench.say(f"[analysis] {time.perf_counter() - t0:.0f} s")
    return {**bench.search("a-sens", sensitivity=str(path)), "analysis": str(path)}


def arm_int8(bench: Bench) -> dict[str, Any]:
    from edgeprune.api import resolve_target

    target = resolve_target("cpu-ort-int8", imgsz=bench.imgsz).with_overrides(threads=1)
    return bench.search("int8", target=target)


ARMS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "baseline-ft": arm_baseline_ft,
    "a": lambda b: b.search("a"),
    "a-depth": lambda b: b.search("a-depth", actions=("width", "depth")),
    "c": arm_c,
    "a@c": arm_a_at_c,
    "b": arm_b,
    "a-kd": lambda b: b.search("a-kd", distill=True),
    "a-native": lambda b: b.search("a-native", native=True),
    "a-sens": arm_a_sens,
    "int8": arm_int8,
}
LABELS = {
    "baseline": "baseline YOLOv8s",
    "baseline-ft": "baseline YOLOv8s, same extra epochs",
    "a": "(a) search at 2x, width",
    "a-depth": "(a) search at 2x, width + depth",
    "a-kd": "(a) search at 2x, width, default KD",
    "a-sens": "(a) search at 2x, width, sensitivity ranking",
    "a-native": "(a) search at 2x, width, native (--native)",
    "b": "(b) uniform L2 at (a)'s budget",
    "c": "(c) YOLOv8n, same total epochs",
    "a@c": "(a@c) search at YOLOv8n's speed",
    "int8": "search at 2x on cpu-ort-int8",
}


def _arm_record(bench: Bench, name: str) -> dict[str, Any]:
    return cached_arm(bench, name, lambda: ARMS[name](bench))


def cached_arm(bench: Bench, name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """An arm's result, from ``WORK/arms/NAME.json`` or by ``run()`` (timed, with ``made_with``,
    and kept there)."""
    path = bench.work / "arms" / f"{name.replace('@', '-at-')}.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    record = run()
    record["seconds"] = round(time.perf_counter() - t0, 1)
    record["made_with"] = made_with()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    bench.say(f"[{name}] done in {record['seconds']:.0f} s")
    return record


def made_with() -> dict[str, Any]:
    """What an arm was made with, kept in its record: a cached arm may predate a change of recipe."""
    import subprocess

    from edgeprune.pruning.options import FINETUNE_RECIPE

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent)  # fmt: skip
    return {"recipe": FINETUNE_RECIPE, "commit": head.stdout.strip() or None}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--small", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--analysis", type=Path)
    parser.add_argument("--work", type=Path, default=Path("bench-hard-arms"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    names = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(names) - set(ARMS))
    if unknown:
        parser.error(f"unknown arms {unknown}; known: {', '.join(ARMS)}")

    from edgeprune.profiling import collect_environment
    from edgeprune.pruning.options import FINETUNE_RECIPE
    from edgeprune.runtimes import get_runtime

    bench = Bench(args)
    records = {name: _arm_record(bench, name) for name in names}

    # every FP32 arm timed in one interleaved run against the baseline; INT8 against its own baseline
    fp32 = {"baseline": str(args.baseline), **{n: r["checkpoint"] for n, r in records.items() if n != "int8"}}
    rows = score_and_time(bench, fp32, {n: {"label": LABELS[n], **records.get(n, {})} for n in fp32})
    base_map = rows[0]["map50_95"]
    if "int8" in records:
        rows.append(_int8_row(bench, records["int8"], base_map))
    by = {r["arm"]: r for r in rows}

    def comparable(*arms: str) -> bool:
        """Both arms ran, with the same fine-tuning recipe: a target is only read between those."""
        return (
            all(a in by for a in arms)
            and len({json.dumps(by[a].get("made_with", {}).get("recipe")) for a in arms}) == 1
        )

    targets = {}
    if comparable("a@c", "c"):
        targets["a_at_c_minus_c_points"] = (by["a@c"]["map50_95"] - by["c"]["map50_95"]) * 100
        targets["a_at_c_latency_vs_c"] = by["a@c"]["vs_baseline_latency"] / by["c"]["vs_baseline_latency"]
    if "a" in by:
        targets["a_map_kept"] = by["a"]["map_kept"]
        if comparable("a", "baseline-ft"):
            targets["a_map_kept_vs_baseline_ft"] = by["a"]["map50_95"] / by["baseline-ft"]["map50_95"]
    if comparable("a-native", "a"):
        targets["native_minus_free_points"] = (by["a-native"]["map50_95"] - by["a"]["map50_95"]) * 100
        targets["native_latency_vs_free"] = (
            by["a-native"]["vs_baseline_latency"] / by["a"]["vs_baseline_latency"]
        )
    if comparable("a-kd", "a"):
        targets["kd_minus_none_points"] = (by["a-kd"]["map50_95"] - by["a"]["map50_95"]) * 100

    print(f"\n{'arm':<46} {'params M':>8} {'GMACs':>6} {'mAP50-95':>8} {'kept':>6} {'x base ms':>9}")
    for r in rows:
        kept = f"{r['map_kept']:.1%}" if r.get("map_kept") is not None else "-"
        print(f"{r['label']:<46} {r['params'] / 1e6:>8.2f} {r['macs'] / 1e9:>6.3f} {r['map50_95']:>8.4f} "
              f"{kept:>6} {r['vs_baseline_latency']:>9.3f}")  # fmt: skip
    print(json.dumps(targets, indent=1))
    if args.json:
        out = {
            "baseline": str(args.baseline), "small": str(args.small), "data": str(args.data), "imgsz": bench.imgsz,
            "epochs": args.epochs, "speedup": SPEEDUP, "recipe": FINETUNE_RECIPE, "rows": rows, "targets": targets,
            "environment": collect_environment(get_runtime("onnxruntime").environment(), 1),
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")


def score_and_time(
    bench: Bench, checkpoints: dict[str, str], extra: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per checkpoint (the first is the baseline): params, MACs, mAP from Ultralytics'
    validator, and its artifact's latency from one interleaved run (5 rounds, 1 thread) as the
    median over rounds of its per-round median over the baseline's; ``extra[name]`` joins the row."""
    from edgeprune.exporting import export_detector
    from edgeprune.models import load_model
    from edgeprune.profiling import profiled, sample_interleaved
    from edgeprune.runtimes import get_runtime

    rows, calls = [], {}
    for name, ckpt in checkpoints.items():
        det = load_model(ckpt)
        artifact = export_detector(
            det, bench.target, bench.work / "final", name.replace("@", "-at-")
        ).artifact
        calls[name] = get_runtime(bench.target.runtime).load(artifact, threads=1).runner()
        rows.append({"arm": name, **det.count(bench.imgsz), **det.evaluate(bench.data, imgsz=bench.imgsz),
                     **extra.get(name, {})})  # fmt: skip
    per_round = sample_interleaved(calls, rounds=5, **profiled(bench.target.profiling))
    base = next(iter(checkpoints))
    base_rounds = [float(np.median(r)) for r in per_round[base]]
    base_map = rows[0]["map50_95"]
    for row in rows:
        rounds = [float(np.median(r)) for r in per_round[row["arm"]]]
        row["p50_ms"] = float(np.median([x for r in per_round[row["arm"]] for x in r]))
        row["vs_baseline_latency"] = float(
            np.median([a / b for a, b in zip(rounds, base_rounds, strict=True)])
        )
        row["map_kept"] = row["map50_95"] / base_map if base_map else None
    return rows


def _int8_row(bench: Bench, record: dict[str, Any], base_map: float) -> dict[str, Any]:
    """The INT8 search's artifact: its mAP and its speed against the INT8 baseline artifact."""
    from edgeprune.api import resolve_target
    from edgeprune.exporting import export_detector
    from edgeprune.models import load_model
    from edgeprune.profiling import profiled, sample_interleaved
    from edgeprune.runtimes import get_runtime

    target = resolve_target("cpu-ort-int8", imgsz=bench.imgsz).with_overrides(threads=1)
    base = export_detector(bench.baseline, target, bench.work / "final", "baseline-int8", calib=bench.data)
    det = load_model(record["checkpoint"])
    runtime = get_runtime(target.runtime)
    calls = {"baseline": runtime.load(base.artifact, threads=1).runner(),
             "int8": runtime.load(Path(record["artifact"]), threads=1).runner()}  # fmt: skip
    per_round = sample_interleaved(calls, rounds=5, **profiled(target.profiling))
    ratio = float(
        np.median(
            [
                np.median(a) / np.median(b)
                for a, b in zip(per_round["int8"], per_round["baseline"], strict=True)
            ]
        )
    )
    art_map = det.evaluate_artifact(Path(record["artifact"]), bench.data, imgsz=bench.imgsz)["map50_95"]
    base_int8_map = bench.baseline.evaluate_artifact(base.artifact, bench.data, imgsz=bench.imgsz)["map50_95"]
    return {
        "arm": "int8", "label": LABELS["int8"], **det.count(bench.imgsz), "map50_95": art_map,
        "map_kept": art_map / base_map if base_map else None, "baseline_int8_map50_95": base_int8_map,
        "vs_baseline_latency": ratio, "p50_ms": float(np.median([x for r in per_round["int8"] for x in r])), **record,
    }  # fmt: skip


if __name__ == "__main__":
    main()
