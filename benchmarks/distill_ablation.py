"""Which distillation recovers a pruned model best? One pruned architecture, fine-tuned four ways.

    .venv/bin/python benchmarks/distill_ablation.py --teacher bench-hard/yolov8s.pt \
        --data bench-hard/data/data.yaml [--speedup 2] [--epochs 12] [--modes none,feature,output,both]
        [--kd-teacher yolov8s-ft12.pt] [--recipe KEY=VALUE ...] [--work bench-distill] [--json benchmarks/results/distill_ablation.json]

1. The teacher (a trained checkpoint, e.g. ``hard_preset.py``'s YOLOv8s) is pruned once by the
   budget search to ``--speedup`` times its speed on ``cpu-ort-fp32`` (1 thread, the data's image
   size), with no fine-tuning: BatchNorm re-estimated, Taylor ranking.
2. That same pruned model is fine-tuned ``--epochs`` epochs once per mode (``none`` or a
   ``DISTILL_MODES`` mode) with the settings the search uses, and validated with Ultralytics'
   validator. Only the distillation differs between rows. Not run by CI.

A mode ``output-VARIANT`` is output distillation with the weights or temperature of
``KD_VARIANTS``. ``--kd-teacher`` distils from another checkpoint (e.g. ``hard_benchmark.py``'s
``baseline-ft``: the teacher trained as many more epochs as the student gets) while the student
stays the one pruned from ``--teacher``; its rows are named ``MODE@STEM``. Each row is kept in
``--work/rows`` and reused; the JSON lists every row there (each naming its teacher).
``--recipe KEY=VALUE`` (repeatable) fine-tunes with a trainer setting over ``FINETUNE_RECIPE``
(e.g. ``warmup_bias_lr=0.0``); its rows are named ``MODE[KEY=VALUE]`` and compared with the
``none`` row of the same recipe. Modes fine-tuned with more than one ``--recipe seed=N`` get their
spread over seeds in the JSON's ``seed_spread``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

# output distillation's weights and temperature per arm, absolute (``output`` and ``both`` alone are
# ``OutputDistillation()``'s defaults, which the ablation chose)
KD_VARIANTS: dict[str, dict[str, float]] = {
    "output-w1": {"cls_weight": 1.0, "box_weight": 1.0, "temperature": 2.0},
    "output-w0.25": {"cls_weight": 0.25, "box_weight": 0.25, "temperature": 2.0},
    "output-t1": {"cls_weight": 1.0, "box_weight": 1.0, "temperature": 1.0},
    "output-cls": {"cls_weight": 1.0, "box_weight": 0.0, "temperature": 2.0},
    "output-box": {"cls_weight": 0.0, "box_weight": 1.0, "temperature": 2.0},
    "both-w1": {"cls_weight": 1.0, "box_weight": 1.0, "temperature": 2.0},
    "output-gated": {"cls_weight": 0.25, "box_weight": 0.25, "temperature": 2.0, "gate": True},
    "output-ungated": {"cls_weight": 0.25, "box_weight": 0.25, "temperature": 2.0, "gate": False},
    "output-t1-gated": {"cls_weight": 0.25, "box_weight": 0.25, "temperature": 1.0, "gate": True},
    "output-gated-passed": {
        "cls_weight": 0.25,
        "box_weight": 0.25,
        "temperature": 2.0,
        "gate": True,
        "until_passed": True,
    },
    "output-cls-gated-passed": {
        "cls_weight": 0.25,
        "box_weight": 0.0,
        "temperature": 2.0,
        "gate": True,
        "until_passed": True,
    },
}
for _name, _kd in KD_VARIANTS.items():  # the rows measured before the stop at the teacher's mAP existed
    _kd.setdefault("until_passed", False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--speedup", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--modes", default="none,feature,output,both")
    parser.add_argument("--kd-teacher", type=Path)
    parser.add_argument("--recipe", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", type=Path, default=Path("bench-distill"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    known = {"none", "feature", "output", "both", *KD_VARIANTS}
    unknown = sorted(set(args.modes.split(",")) - known)
    if unknown:
        parser.error(f"unknown modes {unknown}; known: {', '.join(sorted(known))}")
    change = dict(_setting(item, parser) for item in args.recipe)

    from hard_preset import validation_curve  # this folder's script: the same results.csv reading

    from edgeprune.api import prune_to_budget, resolve_target
    from edgeprune.models import load_model
    from edgeprune.models.distill import OutputDistillation, trainer_overrides
    from edgeprune.pruning.options import FINETUNE_RECIPE

    work = args.work.resolve()
    imgsz = int(json.loads((args.data.parent / "synthetic.json").read_text())["imgsz"])
    target = resolve_target("cpu-ort-fp32", imgsz=imgsz).with_overrides(threads=1)
    pruned_ckpt = work / "search" / "pruned.pt"
    if not pruned_ckpt.is_file():
        t0 = time.perf_counter()
        prune_to_budget(
            args.teacher, target, speedup=args.speedup, data=args.data, epochs=0, steps=3, out=work / "search",
            say=lambda line: print(line, flush=True),
        )  # fmt: skip
        print(f"[search] {time.perf_counter() - t0:.0f} s", flush=True)
    search = json.loads((work / "search" / "prune.json").read_text())
    teacher = load_model(args.teacher)
    teacher_map = teacher.evaluate(args.data, imgsz=imgsz)["map50_95"]
    pruned = load_model(pruned_ckpt)
    before = pruned.evaluate(args.data, imgsz=imgsz)["map50_95"]
    teacher_file = work / "teacher.pt"
    teacher.save(teacher_file, {"role": "distillation teacher"})
    print(f"teacher {teacher_map:.4f}; pruned before fine-tuning {before:.4f}", flush=True)

    kd_teacher_file, kd_teacher_map = teacher_file, teacher_map
    tag = ""
    suffix = "".join(f"[{k}={v}]" for k, v in change.items())  # rows with another recipe are other rows
    recipe = {**FINETUNE_RECIPE, **change}
    if args.kd_teacher is not None:  # a stronger teacher for the same pruned student
        kd_teacher = load_model(args.kd_teacher)
        kd_teacher_map = kd_teacher.evaluate(args.data, imgsz=imgsz)["map50_95"]
        kd_teacher_file = work / f"teacher-{args.kd_teacher.stem}.pt"
        kd_teacher.save(kd_teacher_file, {"role": "distillation teacher"})
        tag = f"@{args.kd_teacher.stem}"
        print(f"distillation teacher {args.kd_teacher}: {kd_teacher_map:.4f}", flush=True)
    rows = []
    for arm in args.modes.split(","):
        mode = arm.split("-")[0]
        name = (arm if mode == "none" else f"{arm}{tag}") + suffix
        record = work / "rows" / f"{name}.json"
        if record.is_file():
            rows.append(json.loads(record.read_text()))
            print(f"{name}: reused {rows[-1]['map50_95']:.4f}", flush=True)
            continue
        det = load_model(pruned_ckpt)
        extra = trainer_overrides(None if mode == "none" else mode, kd_teacher_file)
        kd = None
        if "output_distill" in extra:
            kd = extra["output_distill"] = OutputDistillation(**KD_VARIANTS.get(arm, {}))
        t0 = time.perf_counter()
        det.train(
            args.data, epochs=args.epochs, imgsz=imgsz, batch=16, out_dir=work / "runs", name=name,
            progress=lambda line, m=name: print(f"  {m}: {line.strip()}", flush=True), **recipe, **extra,
        )  # fmt: skip
        seconds = round(time.perf_counter() - t0, 1)
        got = det.evaluate(args.data, imgsz=imgsz)
        curve = [round(v, 5) for v in validation_curve(work / "runs" / name / "results.csv")]
        row = {
            "mode": name, "distill": mode, "kd_teacher": None if mode == "none" else str(kd_teacher_file),
            "kd_teacher_map50_95": None if mode == "none" else kd_teacher_map,
            "output_distillation": None if kd is None else asdict(kd), "recipe": recipe, **got,
            "train_seconds": seconds, "map50_95_by_epoch": curve,
        }  # fmt: skip
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(row, indent=2) + "\n")
        rows.append(row)
        kept = f" ({got['map50_95'] / teacher_map:.1%} of the teacher)" if teacher_map else ""
        print(f"{name}: mAP50-95 {got['map50_95']:.4f}{kept}", flush=True)
    # every row measured on this pruned student so far (other teachers' included), each naming its teacher
    done = {r["mode"] for r in rows}
    rows += [json.loads(f.read_text()) for f in sorted((work / "rows").glob("*.json")) if f.stem not in done]
    nones = {r["mode"]: r["map50_95"] for r in rows if r["distill"] == "none"}
    for r in rows:  # each row against "none" fine-tuned with the same recipe
        none = nones.get("none" + _recipe_of(r["mode"])[1])
        r["vs_none_points"] = (r["map50_95"] - none) * 100 if none is not None else None
        vs = "" if none is None else f"  {r['vs_none_points']:+.2f} points vs none"
        print(f"  {r['mode']:<8} {r['map50_95']:.4f}{vs}")
    seeds = seed_spread(rows)
    for mode, spread in seeds.items():
        print(
            f"  {mode}: seeds {spread['seeds']}, mean {spread['mean']:.4f} (min {spread['min']:.4f}, max {spread['max']:.4f})"
        )
    if args.json:
        out = {
            "teacher": str(args.teacher), "data": str(args.data), "imgsz": imgsz, "speedup": args.speedup,
            "epochs": args.epochs, "teacher_map50_95": teacher_map, "pruned_before_finetune": before,
            "params": search["result"]["params"], "macs": search["result"]["macs"],
            "teacher_params": search["baseline"]["params"], "teacher_macs": search["baseline"]["macs"],
            "search_verdict": search["verdict"], "training": FINETUNE_RECIPE, "rows": rows,
            "output_distillation": asdict(OutputDistillation()), "kd_teacher": str(kd_teacher_file),
            "kd_teacher_map50_95": kd_teacher_map, "seed_spread": seeds,
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


def seed_spread(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """mAP50-95 over seeds, per mode measured with more than one: rows named ``MODE[seed=N]``
    (``seed`` given by ``--recipe``) count with the row ``MODE`` as seed 0, Ultralytics' default."""
    by_mode: dict[str, dict[int, float]] = {}
    for r in rows:
        base, suffix = _recipe_of(r["mode"])
        seed = suffix.removeprefix("[seed=").removesuffix("]")
        if suffix and (seed == suffix or "[" in seed):  # another recipe change than the seed
            continue
        by_mode.setdefault(base, {})[int(seed or 0)] = r["map50_95"]
    return {
        mode: {"seeds": sorted(got), "map50_95": [got[k] for k in sorted(got)], "mean": sum(got.values()) / len(got),
               "min": min(got.values()), "max": max(got.values())}
        for mode, got in by_mode.items() if len(got) > 1
    }  # fmt: skip


def _recipe_of(name: str) -> tuple[str, str]:
    """A row's name split into its mode and its ``[KEY=VALUE]...`` recipe changes (``""`` if none)."""
    cut = name.find("[")
    return (name, "") if cut < 0 else (name[:cut], name[cut:])


def _setting(item: str, parser: argparse.ArgumentParser) -> tuple[str, Any]:
    """``--recipe KEY=VALUE``: a trainer setting over ``FINETUNE_RECIPE``, its value read as YAML."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key:
        parser.error(f"--recipe {item!r}: expected KEY=VALUE, e.g. warmup_bias_lr=0.0")
    return key, yaml.safe_load(value)


if __name__ == "__main__":
    main()
