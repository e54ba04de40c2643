"""Synthetic, deterministic object-detection dataset in Ultralytics format.

edgeprune must run its demo, tests and benchmarks offline, yet pruning and quantization are only
meaningful when the model is judged on real detections (mAP before vs. after). This module is the
stand-in for a user's dataset: it draws simple geometric shapes on cluttered backgrounds so that
a small detector trained from scratch on a CPU reaches a non-trivial mAP within minutes.

The class of an object is its *shape*; colours, rotation, scale and background are random, so a
model has to learn shape rather than colour. Objects may overlap and run off the image edge; an
object that is mostly hidden loses its label, as an annotator would not have boxed it.

Everything is derived from the seed: one random generator per image, keyed by
``(seed, split, index)``, so the same arguments always give byte-identical files and the number of
validation images does not change the training images.

Only numpy and Pillow are used (no OpenCV, no Ultralytics), so generating data stays cheap and
importing this module stays light.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edgeprune.errors import OptionError
from edgeprune.files import write_text_atomic
from edgeprune.registry import Registry

__all__ = ["CLASS_NAMES", "PRESETS", "Preset", "make_synthetic_dataset"]

#: Class names, in class-id order. The class of an object is determined by its shape only.
CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")

# Bump when the drawing changes, so a dataset made by an older version is not silently reused.
GENERATOR_VERSION = 1
_STAMP = "synthetic.json"
_SPLITS = {"train": 0, "val": 1}

_MIN_SIZE = 0.10  # smallest object, as a fraction of the image side (circumscribed diameter)
_MAX_SIZE = 0.60  # largest object
_MIN_OBJECTS, _MAX_OBJECTS = 1, 6  # objects drawn per image (before occlusion drops any labels)
_MAX_HIDDEN = 0.60  # an object with more of its area hidden (occluded or off-image) is not labelled
_SUPERSAMPLE = 4  # masks are drawn at this scale and box-filtered down, for anti-aliased edges


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """A kind of synthetic dataset: its classes, how one image is drawn, and its default size.

    Attributes:
        name: The preset's name (``edgeprune data --preset NAME``).
        class_names: Class names in class-id order.
        render: ``render(rng, imgsz) -> (image, labels)``, labels as ``(cls, xc, yc, w, h)``.
        version: Bumped when the drawing changes, so an older dataset is not silently reused.
        n_train, n_val, imgsz: Defaults for ``make_synthetic_dataset``.
        description: What the preset is for.
    """

    name: str
    class_names: tuple[str, ...]
    render: Callable[[np.random.Generator, int], tuple[Image.Image, list[tuple]]]
    version: int
    n_train: int
    n_val: int
    imgsz: int
    description: str


def make_synthetic_dataset(
    out_dir: str | os.PathLike[str],
    *,
    preset: str = "easy",
    n_train: int | None = None,
    n_val: int | None = None,
    imgsz: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic shape-detection dataset in Ultralytics format and return its data.yaml.

    Layout written under ``out_dir``::

        images/train/000000.png ...   labels/train/000000.txt ...   (``cls xc yc w h``, normalized)
        images/val/000000.png ...     labels/val/000000.txt ...
        data.yaml                     (path, train, val, nc, names)
        synthetic.json                (the parameters, used to detect reuse)

    Generation is deterministic: the same arguments produce byte-identical files. Calling it again
    with the same parameters on a finished dataset returns immediately, which keeps demos and
    benchmarks that call it every time cheap.

    Args:
        out_dir: Directory to write to; created if missing.
        preset: A name in ``PRESETS``: ``easy`` (6 shape classes, the demo's and the tests') or
            ``hard`` (24 fine-grained classes, small crowded objects, distractors; see
            :mod:`edgeprune.data.hard`).
        n_train: Number of training images (default: the preset's).
        n_val: Number of validation images (default: the preset's).
        imgsz: Side of the square images, in pixels (default: the preset's).
        seed: Seed from which every image is derived.
        overwrite: Regenerate even if ``out_dir`` holds a dataset made with other parameters
            (its ``images/{train,val}``, ``labels/{train,val}`` and label caches are deleted).

    Returns:
        Absolute path of the dataset's ``data.yaml``.

    Raises:
        OptionError: If an argument is out of range, or ``out_dir`` already holds a dataset made
            with different parameters (or files this function did not write) and ``overwrite``
            is False.
    """
    kind = PRESETS.get(preset)
    n_train = kind.n_train if n_train is None else n_train
    n_val = kind.n_val if n_val is None else n_val
    imgsz = kind.imgsz if imgsz is None else imgsz
    if n_train < 1 or n_val < 1:
        raise OptionError(f"`n_train` and `n_val` must be >= 1, got n_train={n_train}, n_val={n_val}")
    if imgsz < 32:
        raise OptionError(f"`imgsz` must be >= 32 pixels, got {imgsz}")
    if int(seed) < 0:
        raise OptionError(f"`seed` must be >= 0, got {seed}")

    from edgeprune.files import check_output_folder

    out = check_output_folder(Path(out_dir).expanduser().resolve())
    yaml_path = out / "data.yaml"
    stamp_path = out / _STAMP
    params = {
        "generator": "edgeprune.data.synthetic",
        **({"preset": kind.name} if kind.name != "easy" else {}),  # easy datasets keep their old stamp
        "version": kind.version,
        "n_train": int(n_train),
        "n_val": int(n_val),
        "imgsz": int(imgsz),
        "seed": int(seed),
    }

    stamp = _read_stamp(stamp_path)
    if stamp is not None and not overwrite:
        old = {k: v for k, v in stamp.items() if k != "complete"}
        if old == params:
            if stamp.get("complete") and yaml_path.is_file() and _counts_match(out, n_train, n_val):
                if yaml_path.read_text() != _data_yaml(out, kind.class_names):  # moved or renamed
                    write_text_atomic(yaml_path, _data_yaml(out, kind.class_names))
                return yaml_path
            # Same parameters but an interrupted or damaged run of ours: simply redo it.
        else:
            diff = ", ".join(
                f"{k}={old.get(k)!r} (asked {params[k]!r})" for k in params if old.get(k) != params[k]
            )
            raise OptionError(
                f"{out} already holds a synthetic dataset made with different parameters: {diff}. "
                "Regenerate it with `overwrite`, or choose another directory."
            )
    elif stamp is None and not overwrite:
        ours = [p for p in ("data.yaml", "images", "labels") if (out / p).exists()]
        if ours:
            raise OptionError(
                f"{out} already contains {', '.join(ours)} not made by make_synthetic_dataset; "
                "replace them with `overwrite`, or choose another directory."
            )

    _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_stamp(stamp_path, {**params, "complete": False})
    for split, n in (("train", n_train), ("val", n_val)):
        img_dir = out / "images" / split
        lbl_dir = out / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng([int(seed), _SPLITS[split], i])
            image, labels = kind.render(rng, imgsz)
            stem = f"{i:06d}"
            image.save(img_dir / f"{stem}.png", format="PNG", compress_level=1)
            (lbl_dir / f"{stem}.txt").write_text("".join(_format_label(*lab) for lab in labels))

    write_text_atomic(yaml_path, _data_yaml(out, kind.class_names))
    _write_stamp(stamp_path, {**params, "complete": True})
    return yaml_path


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _read_stamp(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_stamp(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _counts_match(out: Path, n_train: int, n_val: int) -> bool:
    for split, n in (("train", n_train), ("val", n_val)):
        for sub, ext in (("images", ".png"), ("labels", ".txt")):
            d = out / sub / split
            if not d.is_dir() or sum(1 for f in os.scandir(d) if f.name.endswith(ext)) != n:
                return False
    return True


def _clear(out: Path) -> None:
    """Delete what a previous generation wrote (and Ultralytics' label caches), nothing else."""
    for split in _SPLITS:
        for sub in ("images", "labels"):
            shutil.rmtree(out / sub / split, ignore_errors=True)
        (out / "labels" / f"{split}.cache").unlink(missing_ok=True)
    for name in ("data.yaml", _STAMP):
        (out / name).unlink(missing_ok=True)


def _data_yaml(out: Path, names: tuple[str, ...]) -> str:
    # Written by hand (not yaml.dump) so the bytes are fixed; the path is quoted as JSON, which
    # is valid YAML and safe for any characters in the directory name.
    lines = [
        "# Synthetic shapes dataset written by edgeprune.data.synthetic (regenerate, don't edit).",
        f"path: {json.dumps(str(out))}",
        "train: images/train",
        "val: images/val",
        f"nc: {len(names)}",
        "names:",
        *(f"  {i}: {name}" for i, name in enumerate(names)),
    ]
    return "\n".join(lines) + "\n"


def _format_label(cls: int, xc: float, yc: float, w: float, h: float) -> str:
    return f"{cls} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}\n"


# --------------------------------------------------------------------------------------------
# Shapes: each returns the mask drawing and the exact geometric extent of the shape
# --------------------------------------------------------------------------------------------

Point = tuple[float, float]


@dataclass(frozen=True)
class _Shape:
    """A shape centred at the origin: polygons to fill (``holes`` are cleared after) or discs."""

    polygons: tuple[tuple[Point, ...], ...] = ()
    discs: tuple[float, ...] = ()  # radii of filled discs
    holes: tuple[float, ...] = ()  # radii of discs cleared after filling

    def extent(self) -> tuple[float, float, float, float]:
        """Exact (x0, y0, x1, y1) of the filled area, relative to the centre."""
        xs = [p[0] for poly in self.polygons for p in poly] + [s * r for r in self.discs for s in (-1, 1)]
        ys = [p[1] for poly in self.polygons for p in poly] + [s * r for r in self.discs for s in (-1, 1)]
        return min(xs), min(ys), max(xs), max(ys)


def _rotate(points: list[Point], angle: float) -> tuple[Point, ...]:
    c, s = math.cos(angle), math.sin(angle)
    return tuple((x * c - y * s, x * s + y * c) for x, y in points)


def _regular(n: int, r: float, angle: float) -> list[Point]:
    return [
        (r * math.cos(angle + 2 * math.pi * k / n), r * math.sin(angle + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _circle(r: float, angle: float, rng: np.random.Generator) -> _Shape:
    return _Shape(discs=(r,))


def _square(r: float, angle: float, rng: np.random.Generator) -> _Shape:
    return _Shape(polygons=(tuple(_regular(4, r, angle + math.pi / 4)),))


def _triangle(r: float, angle: float, rng: np.random.Generator) -> _Shape:
    return _Shape(polygons=(tuple(_regular(3, r, angle - math.pi / 2)),))


def _star(r: float, angle: float, rng: np.random.Generator) -> _Shape:
    inner = r * rng.uniform(0.38, 0.5)
    pts = [
        ((r if k % 2 == 0 else inner) * math.cos(angle - math.pi / 2 + math.pi * k / 5),
         (r if k % 2 == 0 else inner) * math.sin(angle - math.pi / 2 + math.pi * k / 5))
        for k in range(10)
    ]  # fmt: skip
    return _Shape(polygons=(tuple(pts),))


def _cross(r: float, angle: float, rng: np.random.Generator) -> _Shape:
    a = r * rng.uniform(0.22, 0.32)  # half the width of an arm
    pts = [(a, r), (a, a), (r, a), (r, -a), (a, -a), (a, -r),
           (-a, -r), (-a, -a), (-r, -a), (-r, a), (-a, a), (-a, r)]  # fmt: skip
    return _Shape(polygons=(_rotate(pts, angle),))


def _ring(r: float, angle: float, rng: np.random.Generator) -> _Shape:
    return _Shape(discs=(r,), holes=(r * rng.uniform(0.45, 0.62),))


_SHAPES: tuple[Callable[[float, float, np.random.Generator], _Shape], ...] = (
    _circle,
    _square,
    _triangle,
    _star,
    _cross,
    _ring,
)
assert len(_SHAPES) == len(CLASS_NAMES)


def _shape_alpha(shape: _Shape, cx: float, cy: float) -> tuple[np.ndarray, int, int]:
    """Rasterize ``shape`` centred at (cx, cy) into an anti-aliased alpha patch.

    Returns the float32 alpha in [0, 1] and the image coordinates of the patch's top-left pixel.
    Pixel (i, j) covers [i, i+1) x [j, j+1), so the shape's extent maps to normalized boxes exactly.
    """
    x0, y0, x1, y1 = shape.extent()
    px, py = math.floor(cx + x0) - 1, math.floor(cy + y0) - 1
    w, h = math.ceil(cx + x1) + 1 - px, math.ceil(cy + y1) + 1 - py
    k = _SUPERSAMPLE
    canvas = Image.new("L", (w * k, h * k), 0)
    draw = ImageDraw.Draw(canvas)
    ox, oy = (cx - px) * k, (cy - py) * k

    def disc(radius: float, fill: int) -> None:
        rr = radius * k
        # Pillow's ellipse covers pixel centres inside the box, so shift by half a pixel.
        draw.ellipse([ox - rr, oy - rr, ox + rr - 1, oy + rr - 1], fill=fill)

    for radius in shape.discs:
        disc(radius, 255)
    for poly in shape.polygons:
        draw.polygon([(ox + x * k - 0.5, oy + y * k - 0.5) for x, y in poly], fill=255)
    for radius in shape.holes:
        disc(radius, 0)
    alpha = canvas.resize((w, h), Image.Resampling.BOX)
    return np.asarray(alpha, dtype=np.float32) / 255.0, px, py


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _random_color(rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour (float, 0..255): mostly saturated hues, sometimes grey."""
    if rng.random() < 0.15:
        return np.full(3, rng.uniform(0, 255), dtype=np.float32)
    h, s, v = rng.random(), rng.uniform(0.35, 1.0), rng.uniform(0.3, 1.0)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float32) * 255.0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cluttered HxWx3 float32 background: gradient, smooth noise, stripes, checks or flat."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c1, c2 = _random_color(rng), _random_color(rng)
    kind = rng.integers(5)
    if kind == 0:  # linear gradient at a random angle
        a = rng.uniform(0, 2 * math.pi)
        t = (xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == 1:  # smooth colour noise, upsampled from a coarse grid
        g = int(rng.integers(3, 9))
        coarse = (rng.random((g, g, 3)) * 255).astype(np.uint8)
        bg = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), np.float32)
        t = None
    elif kind == 2:  # soft stripes
        a, f = rng.uniform(0, math.pi), rng.uniform(2, 10)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * f * (xx * math.cos(a) + yy * math.sin(a)) + rng.uniform(0, 6.3))
    elif kind == 3:  # checker board, low contrast
        n = int(rng.integers(3, 10))
        t = ((np.floor(xx * n) + np.floor(yy * n)) % 2).astype(np.float32)
        c2 = c1 + (c2 - c1) * rng.uniform(0.15, 0.5)
    else:  # flat
        t = np.zeros_like(xx)
    if t is not None:
        bg = c1 + (c2 - c1) * t[..., None]
    # Pixel noise of random strength, to keep the detector from keying on perfectly flat areas.
    bg = bg + rng.normal(0.0, rng.uniform(2, 14), size=(size, size, 1 if rng.random() < 0.5 else 3))
    return bg.astype(np.float32)


def _draw_clutter(rng: np.random.Generator, img: np.ndarray) -> None:
    """Unlabelled clutter: random lines and small irregular blobs, drawn under the objects."""
    size = img.shape[0]
    layer = Image.new("RGB", (size, size))
    mask = Image.new("L", (size, size), 0)
    draw, mdraw = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(0, 5))):  # lines across the image
        pts = [tuple(float(v) for v in rng.uniform(-0.1, 1.1, 2) * size) for _ in range(2)]
        color = tuple(int(c) for c in _random_color(rng))
        width = int(rng.integers(1, max(2, size // 50) + 1))
        draw.line(pts, fill=color, width=width)
        mdraw.line(pts, fill=255, width=width)
    for _ in range(int(rng.integers(0, 6))):  # small blobs: irregular, many-sided, clearly not a class
        r = rng.uniform(0.015, 0.035) * size
        cx, cy = rng.uniform(0, size, 2)
        n = int(rng.integers(7, 12))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = r * rng.uniform(0.5, 1.0, n)
        aspect = rng.uniform(0.4, 1.0)
        pts = [
            (float(cx + rr * math.cos(a)), float(cy + aspect * rr * math.sin(a)))
            for a, rr in zip(angles, radii, strict=True)
        ]
        color = tuple(int(c) for c in _random_color(rng))
        draw.polygon(pts, fill=color)
        mdraw.polygon(pts, fill=255)
    m = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    img *= 1.0 - m
    img += np.asarray(layer, dtype=np.float32) * m


def _render_image(rng: np.random.Generator, size: int) -> tuple[Image.Image, list[tuple]]:
    """Draw one image; return it and its labels ``(cls, xc, yc, w, h)`` (normalized)."""
    img = _background(rng, size)
    _draw_clutter(rng, img)

    owner = np.full((size, size), -1, dtype=np.int16)  # which object is on top at each pixel
    objects: list[tuple[int, tuple[float, float, float, float], float]] = []  # cls, box, full area
    placed: list[tuple[float, float, float]] = []  # cx, cy, r
    for _ in range(int(rng.integers(_MIN_OBJECTS, _MAX_OBJECTS + 1))):
        cls = int(rng.integers(len(_SHAPES)))
        # Log-uniform diameter: every octave of scale (10-20 %, 20-40 % ...) is about as common.
        r = 0.5 * size * math.exp(rng.uniform(math.log(_MIN_SIZE), math.log(_MAX_SIZE)))
        for _attempt in range(10):  # avoid stacking an object right on top of another
            cx, cy = rng.uniform(0.4 * r, size - 0.4 * r, 2)
            if all(math.hypot(cx - x, cy - y) > 0.5 * (r + rr) for x, y, rr in placed):
                break
        else:
            continue
        shape = _SHAPES[cls](r, rng.uniform(0, 2 * math.pi), rng)
        alpha, px, py = _shape_alpha(shape, cx, cy)
        area = float((alpha >= 0.5).sum())
        if area < 4:
            continue
        # Visible part of the patch inside the image.
        h, w = alpha.shape
        ix0, iy0, ix1, iy1 = max(px, 0), max(py, 0), min(px + w, size), min(py + h, size)
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        a = alpha[iy0 - py : iy1 - py, ix0 - px : ix1 - px]
        region = img[iy0:iy1, ix0:ix1]
        color = _contrasting_color(rng, region[a >= 0.5])
        fill = _object_fill(rng, color, a.shape)
        region *= 1.0 - a[..., None]
        region += fill * a[..., None]
        owner[iy0:iy1, ix0:ix1][a >= 0.5] = len(objects)

        x0, y0, x1, y1 = shape.extent()
        box = (max(cx + x0, 0.0), max(cy + y0, 0.0), min(cx + x1, float(size)), min(cy + y1, float(size)))
        objects.append((cls, box, area))
        placed.append((cx, cy, r))

    image = _finish(rng, img, blur_max=0.8)
    return image, _visible_labels(
        [(cls, box, area, i) for i, (cls, box, area) in enumerate(objects)], owner, size, _MAX_HIDDEN, 2
    )


def _finish(rng: np.random.Generator, img: np.ndarray, *, blur_max: float) -> Image.Image:
    """The image as written: a mild blur one time in four (real images are rarely razor sharp)."""
    if rng.random() < 0.25:
        img = np.asarray(
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(
                ImageFilter.GaussianBlur(rng.uniform(0.3, blur_max))
            ),
            dtype=np.float32,
        )
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")


def _visible_labels(
    objects: list[tuple[int, tuple[float, float, float, float], float, int]],
    owner: np.ndarray,
    size: int,
    max_hidden: float,
    min_side: float,
) -> list[tuple]:
    """Labels ``(cls, xc, yc, w, h)`` of the ``(cls, box, area, owner index)`` objects that are
    visible enough (at most ``max_hidden`` of their area hidden) and at least ``min_side`` pixels."""
    visible = np.bincount(owner[owner >= 0].ravel(), minlength=max((o[3] for o in objects), default=-1) + 1)
    labels = []
    for cls, (x0, y0, x1, y1), area, index in objects:
        if visible[index] < (1.0 - max_hidden) * area or x1 - x0 < min_side or y1 - y0 < min_side:
            continue
        labels.append((cls, (x0 + x1) / 2 / size, (y0 + y1) / 2 / size, (x1 - x0) / size, (y1 - y0) / size))
    return labels


def _contrasting_color(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour that stands out from the pixels it will cover (so every label is visible)."""
    mean = under.mean(axis=0) if len(under) else np.full(3, 128.0, dtype=np.float32)
    best, best_d = None, -1.0
    for _ in range(8):
        c = _random_color(rng)
        d = float(np.linalg.norm(c - mean))
        if d >= 90:
            return c
        if d > best_d:
            best, best_d = c, d
    # Nothing random stood out: push the best one away from the background.
    assert best is not None
    direction = (best - mean) / max(best_d, 1e-6) if best_d > 1e-3 else np.ones(3, np.float32)
    return np.clip(mean + direction * 120.0, 0, 255).astype(np.float32)


def _object_fill(rng: np.random.Generator, color: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The object's surface: its colour with a little shading and noise."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    t = (xx * math.cos(a) + yy * math.sin(a)) / max(h, w, 1)
    shade = rng.uniform(-40, 40) * (t - t.mean())
    noise = rng.normal(0.0, rng.uniform(0, 8), size=(h, w, 1))
    return color[None, None, :] + shade[..., None] + noise


PRESETS: Registry[Preset] = Registry("synthetic preset")
PRESETS.register(
    "easy",
    Preset(
        "easy", CLASS_NAMES, _render_image, GENERATOR_VERSION, 400, 100, 160,
        "6 shape classes, 1-6 objects of 10-60% of the image: a small detector learns it in minutes",
    ),
)  # fmt: skip
PRESETS.register("hard", "edgeprune.data.hard:HARD")
