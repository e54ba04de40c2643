"""How should a pruned model be fine-tuned? One pruned architecture, fine-tuned one way per arm.

    .venv/bin/python benchmarks/finetune_ablation.py --pruned bench-distill/search/pruned.pt \
        --teacher bench-hard/yolov8s.pt --data bench-hard/data/data.yaml [--epochs 12]
        [--arms current,ultralytics,...] [--curve-epochs 36] [--bn-after current]
        [--work bench-finetune] [--json benchmarks/results/finetune_ablation.json]

The pruned model (``distill_ablation.py``'s budget search: 2x on ``cpu-ort-fp32``, BatchNorm
re-estimated, no fine-tuning) is fine-tuned ``--epochs`` epochs once per arm. Each arm changes one
setting of the ``current`` recipe (``FINETUNE_RECIPE``); ``ultralytics`` is Ultralytics' own
defaults (optimizer ``auto``, 3 warm-up epochs, mosaic). ``results/finetune_ablation.json`` was
measured when the recipe was AdamW at lr0 0.002 without warm-up, with mosaic (its
``base_recipe``); its ``warmup-1+no-mosaic`` arm is today's recipe, whose own changes are
``warmup-0`` and ``mosaic-on``. Every arm is validated with Ultralytics' validator, and its per-epoch
validation mAP is kept. ``--curve-epochs`` adds one longer run of the current recipe, to see
where more epochs stop paying. Each arm's result is kept in ``--work`` and reused. Not run by CI.

``seed-1`` is the current recipe with another seed (Ultralytics' default is 0): the spread of one
seed, against which the arms' differences are read. ``ema-fast`` is the one arm Ultralytics has no argument for: its EMA ramps with a time constant of
2000 updates, so over a short fine-tune (600 images, batch 16, 12 epochs: 456 updates) the EMA
is nearly the live model. The arm gives the EMA a time constant of 100 updates.

``--bn-after`` asks whether BatchNorm re-estimation pays after fine-tuning too (it is done after
pruning): each named arm's fine-tuned weights get their BatchNorm statistics re-estimated on
``BN_IMAGES`` un-augmented train images (``Detector.recalibrate_batchnorm``) and are validated
again. No training: the row ``ARM+bn`` reads against the arm's own.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ARMS: dict[str, dict[str, Any]] = {
    "current": {},
    "ultralytics": {"optimizer": "auto", "lr0": 0.01, "warmup_epochs": 3.0},
    "lr0-0.001": {"lr0": 0.001},
    "lr0-0.004": {"lr0": 0.004},
    "cos-lr": {"cos_lr": True},
    "warmup-1": {"warmup_epochs": 1.0},
    "no-mosaic": {"close_mosaic": -1},  # -1: replaced by the epochs, mosaic closed from the start
    "mosaic-8": {"close_mosaic": -4},  # -4: the last 4 epochs without mosaic, 8 with it
    "ema-fast": {"ema_tau": 100},
    "seed-1": {"seed": 1},  # the current recipe with another seed: how far one seed moves the result
    "warmup-1+no-mosaic": {"warmup_epochs": 1.0, "close_mosaic": -1},
    "warmup-0": {"warmup_epochs": 0.0},
    "mosaic-on": {"mosaic": 1.0},
}

BN_IMAGES = 256  # as the search re-estimates after pruning (SearchConfig.bn_images)


@contextmanager
def _ema_tau(tau: int | None) -> Iterator[None]:
    """Ultralytics' trainer with its EMA's ramp time constant set to ``tau`` updates."""
    if tau is None:
        yield
        return
    import ultralytics.engine.trainer as trainer_module

    original = trainer_module.ModelEMA

    class FastEMA(original):  # type: ignore[misc, valid-type]
        def __init__(self, model: Any, decay: float = 0.9999, tau_: int = tau, updates: int = 0) -> None:
            super().__init__(model, decay=decay, tau=tau_, updates=updates)

    trainer_module.ModelEMA = FastEMA
    try:
        yield
    finally:
        trainer_module.ModelEMA = original


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pruned", type=Path, required=True)
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--curve-epochs", type=int, default=36)
    parser.add_argument("--bn-after", default="")
    parser.add_argument("--work", type=Path, default=Path("bench-finetune"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from hard_preset import validation_curve  # this folder's script: the same results.csv reading

    from edgeprune.models import load_model
    from edgeprune.pruning.options import FINETUNE_RECIPE

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    imgsz = int(json.loads((args.data.parent / "synthetic.json").read_text())["imgsz"])
    teacher_map = load_model(args.teacher).evaluate(args.data, imgsz=imgsz)["map50_95"]
    before = load_model(args.pruned).evaluate(args.data, imgsz=imgsz)["map50_95"]
    print(f"teacher {teacher_map:.4f}; pruned before fine-tuning {before:.4f}", flush=True)

    plan = [(arm, args.epochs) for arm in args.arms.split(",") if arm]
    if args.curve_epochs:
        plan.append(("current", args.curve_epochs))
    rows: list[dict[str, Any]] = []
    for arm, epochs in plan:
        name = arm if epochs == args.epochs else f"{arm}-{epochs}ep"
        record = work / f"{name}.json"
        if record.is_file():
            rows.append(json.loads(record.read_text()))
            print(f"{name}: reused {rows[-1]['map50_95']:.4f}", flush=True)
        else:
            change = dict(ARMS[arm])
            tau = change.pop("ema_tau", None)
            if change.get("close_mosaic", 0) < 0:
                change["close_mosaic"] = epochs if change["close_mosaic"] == -1 else -change["close_mosaic"]
            recipe = {**FINETUNE_RECIPE, **change}
            det = load_model(args.pruned)
            t0 = time.perf_counter()
            with _ema_tau(tau):
                det.train(
                    args.data, epochs=epochs, imgsz=imgsz, batch=16, out_dir=work / "runs", name=name,
                    progress=lambda line, n=name: print(f"  {n}: {line.strip()}", flush=True), **recipe,
                )  # fmt: skip
            seconds = round(time.perf_counter() - t0, 1)
            got = det.evaluate(args.data, imgsz=imgsz)
            curve = [round(v, 5) for v in validation_curve(work / "runs" / name / "results.csv")]
            row = {
                "arm": arm, "epochs": epochs, "change": ARMS[arm], "recipe": recipe, **got,
                "train_seconds": seconds, "map50_95_by_epoch": curve,
            }  # fmt: skip
            record.write_text(json.dumps(row, indent=2) + "\n")
            rows.append(row)
            print(f"{name}: mAP50-95 {got['map50_95']:.4f} in {seconds:.0f} s", flush=True)
    for arm in [a for a in args.bn_after.split(",") if a]:
        rows.append(_bn_after(work, arm, args.epochs, args.data, imgsz))
    current = next(
        (r["map50_95"] for r in rows if r["arm"] == "current" and r["epochs"] == args.epochs), None
    )
    for r in rows:
        r["vs_current_points"] = None if current is None else round((r["map50_95"] - current) * 100, 2)
    if args.json:
        out = {
            "pruned": str(args.pruned), "teacher": str(args.teacher), "data": str(args.data), "imgsz": imgsz,
            "epochs": args.epochs, "teacher_map50_95": teacher_map, "pruned_before_finetune": before,
            "base_recipe": FINETUNE_RECIPE, "rows": rows,
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    for r in rows:
        print(
            f"  {r['arm']:<12} {r['epochs']:>3} ep  {r['map50_95']:.4f}  {r['vs_current_points']:+.2f} vs current"
        )


def _bn_after(work: Path, arm: str, epochs: int, data: Path, imgsz: int) -> dict[str, Any]:
    """``arm``'s fine-tuned weights validated before and after BatchNorm re-estimation."""
    from edgeprune.models import load_model

    record = work / f"{arm}+bn.json"
    if record.is_file():
        return json.loads(record.read_text())
    det = load_model(work / "runs" / arm / "weights" / "best.pt")
    before = det.evaluate(data, imgsz=imgsz)
    images = det.recalibrate_batchnorm(data, imgsz=imgsz, images=BN_IMAGES)
    got = det.evaluate(data, imgsz=imgsz)
    row = {
        "arm": f"{arm}+bn", "epochs": epochs, "change": {"bn_reestimated_after": arm, "images": images}, **got,
        "before_reestimation": before, "bn_gain_points": round((got["map50_95"] - before["map50_95"]) * 100, 2),
    }  # fmt: skip
    record.write_text(json.dumps(row, indent=2) + "\n")
    print(
        f"{arm}+bn: mAP50-95 {before['map50_95']:.4f} -> {got['map50_95']:.4f} after re-estimating BatchNorm"
    )
    return row


if __name__ == "__main__":
    main()
