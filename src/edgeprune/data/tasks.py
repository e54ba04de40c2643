"""The synthetic detection set relabelled for Ultralytics' other tasks: segment, pose and obb.

Seg, pose and OBB models train on labels of their own format. Offline there is no such dataset
to hand, so a detection set (``make_synthetic_dataset``) is relabelled from its boxes: each box
becomes a polygon of its 4 corners (``segment``), 4 corners (``obb``), or the box with keypoints
at its centre (``pose``, as many as the model's ``kpt_shape`` says). The images are linked, not
copied. Good enough to train and validate a seg/pose/obb head end to end (what the native-mode
proof needs); not a benchmark of those tasks.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

from edgeprune.errors import EdgepruneError

TASKS = ("segment", "pose", "obb")


def _corners(xc: float, yc: float, w: float, h: float) -> list[float]:
    x0, y0, x1, y1 = xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _relabel(line: str, task: str, kpt_shape: tuple[int, int]) -> str:
    cls, *box = line.split()
    xc, yc, w, h = map(float, box)
    if task in ("segment", "obb"):
        values = _corners(xc, yc, w, h)
    else:
        k, dims = kpt_shape
        point = [xc, yc] + ([2.0] if dims == 3 else [])
        values = [xc, yc, w, h] + point * k
    return " ".join([cls, *(f"{v:.6f}" for v in values)]) + "\n"


def task_dataset(data: str | Path, task: str, out: str | Path, kpt_shape: tuple[int, int] = (17, 3)) -> Path:
    """Write ``data`` (a detection data.yaml) relabelled for ``task`` into ``out``; returns its data.yaml.

    ``kpt_shape``: keypoints per object and values per keypoint (2 or 3), for ``pose``; it must be
    the model's (``yolov8n-pose.yaml``: 17 x 3).
    """
    if task not in TASKS:
        raise EdgepruneError(f"task {task!r}: the synthetic set can be relabelled for {', '.join(TASKS)}")
    info = yaml.safe_load(Path(data).read_text())
    root = Path(info.get("path") or Path(data).parent)
    out = Path(out).resolve()
    for split in ("train", "val"):
        images = root / info[split]
        labels = root / str(info[split]).replace("images", "labels", 1)
        if not images.is_dir() or not labels.is_dir():
            raise EdgepruneError(f"{data}: `{split}` must be an images/ folder with its labels/ next to it")
        for sub in ("images", "labels"):
            shutil.rmtree(out / sub / split, ignore_errors=True)
            (out / sub / split).mkdir(parents=True)
        # each image linked (Ultralytics resolves the folder's path, so a linked folder would
        # lead it back to the detection labels next to the originals)
        for image in images.iterdir():
            os.symlink(image.resolve(), out / "images" / split / image.name)
        for label in labels.glob("*.txt"):
            lines = [ln for ln in label.read_text().splitlines() if ln.strip()]
            (out / "labels" / split / label.name).write_text(
                "".join(_relabel(ln, task, kpt_shape) for ln in lines)
            )
    names = info["names"]
    spec = {"path": str(out), "train": "images/train", "val": "images/val", "nc": len(names), "names": names}
    if task == "pose":
        spec.update(kpt_shape=list(kpt_shape), flip_idx=list(range(kpt_shape[0])))
    path = out / "data.yaml"
    path.write_text(
        f"# {task} labels made from {json.dumps(str(data))} by edgeprune.data.tasks\n" + yaml.safe_dump(spec)
    )
    return path
