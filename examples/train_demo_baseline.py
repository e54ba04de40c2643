"""Train the YOLOv8n baseline that `edgeprune demo` ships, on the demo's own synthetic dataset.

    .venv/bin/python examples/train_demo_baseline.py [--epochs 120] [--out demo-baseline]

The result, `src/edgeprune/assets/demo_baseline.pt`, is portable: the model config name, the
class names, the training settings and an fp16 state dict (loaded with torch's weights_only
unpickler, so the file cannot carry code). The demo rebuilds YOLOv8n from its config and loads
these weights, instead of spending most of its ten minutes training from scratch; with
`edgeprune demo --retrain` it trains a baseline itself.

It is also a template for training a small detector offline on data you generate.
"""

import argparse
import time
from pathlib import Path

from edgeprune.data import make_synthetic_dataset
from edgeprune.demo import BASELINE_ASSET, DemoSettings, save_portable, train_baseline_from_scratch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--out", default="demo-baseline", help="working folder (dataset, Ultralytics run)")
    parser.add_argument("--asset", default=str(BASELINE_ASSET), help="where to write the portable checkpoint")
    args = parser.parse_args()

    settings = DemoSettings(base_epochs=args.epochs)
    out = Path(args.out).resolve()
    data = make_synthetic_dataset(
        out / "data", n_train=settings.n_train, n_val=settings.n_val, imgsz=settings.imgsz, seed=settings.seed
    )
    start = time.perf_counter()
    detector = train_baseline_from_scratch(settings, data, out)
    metrics = detector.evaluate(data, imgsz=settings.imgsz, batch=settings.batch)
    path = save_portable(detector, settings, metrics, Path(args.asset))
    print(f"trained {args.epochs} epochs in {time.perf_counter() - start:.0f} s: {metrics}; wrote {path}")


if __name__ == "__main__":
    main()
