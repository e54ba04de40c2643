"""What does pruning attention by heads buy? The same budget search with heads pruned and kept.

    .venv/bin/python benchmarks/heads_benchmark.py --models bench-hard/yolo11s.pt,bench-hard/yolo12s.pt \
        --data bench-hard/data/data.yaml [--epochs 12] [--speedup 2] [--work bench-heads]
        [--json benchmarks/results/heads_benchmark.json]

``--models`` are ``hard_preset.py``'s checkpoints (trained from scratch on the hard preset). For
each model, two arms run ``prune_to_budget`` at ``--speedup`` times the baseline's speed on
``cpu-ort-fp32`` (1 thread, the data's image size; 3 steps, widths, Taylor ranking, ``--epochs``
of fine-tuning with the product's recipe), differing in one option:

- ``heads``: the default: an attention block's stream loses whole heads, the least important
  first (``OpaqueAttention.head_scores``), with its query/key/value rows and projection columns;
- ``whole``: ``keep_heads=True``: every attention block keeps all its heads (its stream and
  the halves of the block around it stay whole), as before head pruning existed.

Then each model's baseline and both arms are timed in one interleaved run (5 rounds), mAP50-95
from Ultralytics' validator, and the heads each attention block kept are counted. Each arm's
result is kept in ``--work`` and reused. Not run by CI.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hard_benchmark import Bench, cached_arm, score_and_time

ARMS = {"heads": {}, "whole": {"keep_heads": True}}


def attention_heads(checkpoint: str | Path) -> dict[str, int]:
    """Heads of every attention block (PSA ``Attention``, YOLO12 ``AAttn``), by module name."""
    from edgeprune.models import load_model

    module = load_model(checkpoint).module
    return {
        name: int(m.num_heads)
        for name, m in module.named_modules()
        if type(m).__name__ in ("Attention", "AAttn")
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", required=True, help="comma-separated checkpoints")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--speedup", type=float, default=2.0)
    parser.add_argument("--work", type=Path, default=Path("bench-heads"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from edgeprune.profiling import collect_environment
    from edgeprune.pruning.options import FINETUNE_RECIPE
    from edgeprune.runtimes import get_runtime

    models, targets = [], {}
    for ckpt in [Path(m) for m in args.models.split(",") if m]:
        ns = argparse.Namespace(baseline=ckpt, data=args.data, epochs=args.epochs, work=args.work / ckpt.stem)
        bench = Bench(ns)
        records = {}
        for arm, options in ARMS.items():
            search = lambda a=arm, o=options, b=bench: b.search(a, speedup=args.speedup, **o)  # noqa: E731
            records[arm] = cached_arm(bench, arm, search)
        checkpoints = {"baseline": str(ckpt), **{arm: r["checkpoint"] for arm, r in records.items()}}
        rows = score_and_time(
            bench,
            checkpoints,
            {n: {**records.get(n, {}), "heads": attention_heads(c)} for n, c in checkpoints.items()},
        )
        by = {r["arm"]: r for r in rows}
        targets[ckpt.stem] = {
            "heads_minus_whole_points": (by["heads"]["map50_95"] - by["whole"]["map50_95"]) * 100,
            "heads_latency_vs_whole": by["heads"]["vs_baseline_latency"] / by["whole"]["vs_baseline_latency"],
        }
        models.append({"model": str(ckpt), "rows": rows})
        print(
            f"\n{ckpt.stem}: {'arm':<9} {'params M':>8} {'GMACs':>6} {'mAP50-95':>8} {'kept':>6} {'x base ms':>9}  heads"
        )
        for r in rows:
            heads = ",".join(str(h) for h in r["heads"].values())
            print(f"{'':<{len(ckpt.stem) + 2}}{r['arm']:<9} {r['params'] / 1e6:>8.2f} {r['macs'] / 1e9:>6.3f} "
                  f"{r['map50_95']:>8.4f} {r['map_kept']:>6.1%} {r['vs_baseline_latency']:>9.3f}  {heads}")  # fmt: skip
    print(json.dumps(targets, indent=1))
    if args.json:
        out = {
            "data": str(args.data), "epochs": args.epochs, "speedup": args.speedup, "recipe": FINETUNE_RECIPE,
            "models": models, "targets": targets,
            "environment": collect_environment(get_runtime("onnxruntime").environment(), 1),
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
