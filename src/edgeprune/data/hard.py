"""The ``hard`` synthetic preset: a detection set where a larger model's capacity matters.

On the ``easy`` set (6 shapes, a few large objects) YOLOv8s is barely better than YOLOv8n, so a
benchmark there cannot show what pruning a larger model keeps. This preset makes the small
model fail on purpose, with what real scenes have:

* **fine-grained classes**: 24 = 6 shapes x 4 surface patterns (``plain``, ``striped``,
  ``dotted``, ``framed``), told apart by detail, never by colour (every object's colours are
  random);
* **small objects**: diameters log-uniform from 4% to 30% of the image side, 6-24 per image;
* **crowding and occlusion**: objects may overlap by about 40% of their size; one hidden for
  more than half its area loses its label, as an annotator would not have boxed it;
* **distractors**, unlabelled: shapes outside the class set (pentagons, hexagons, ellipses,
  crescents) and class shapes with a pattern outside the set (checkered), drawn among the
  objects and occluding them like any object;
* **strong clutter**: the easy set's textured backgrounds, twice its lines and blobs.

Deterministic by seed as the easy set is (``make_synthetic_dataset(..., preset="hard")``).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from edgeprune.data.synthetic import (
    _SHAPES,
    CLASS_NAMES,
    Preset,
    _background,
    _contrasting_color,
    _draw_clutter,
    _finish,
    _object_fill,
    _regular,
    _Shape,
    _shape_alpha,
    _visible_labels,
)

PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "framed")
HARD_CLASSES: tuple[str, ...] = tuple(f"{shape}-{pattern}" for shape in CLASS_NAMES for pattern in PATTERNS)

_MIN_SIZE, _MAX_SIZE = 0.04, 0.30  # diameter, as a fraction of the image side
_MIN_OBJECTS, _MAX_OBJECTS = 6, 24
_MIN_DISTRACTORS, _MAX_DISTRACTORS = 2, 6
_SEPARATION = 0.3  # centres at least this x (r1 + r2) apart: overlaps of ~40% of a size happen
_MAX_HIDDEN = 0.5
_MIN_PERIOD = 3.0  # pixels: a pattern finer than this would not survive the rasterizer


def _pentagon(r: float, angle: float, rng: np.random.Generator) -> _Shape:
    return _Shape(polygons=(tuple(_regular(5, r, angle)),))


def _hexagon(r: float, angle: float, rng: np.random.Generator) -> _Shape:
    return _Shape(polygons=(tuple(_regular(6, r, angle)),))


def _ellipse(r: float, angle: float, rng: np.random.Generator) -> _Shape:
    k = rng.uniform(0.45, 0.7)
    c, s = math.cos(angle), math.sin(angle)
    pts = []
    for t in np.linspace(0, 2 * math.pi, 28, endpoint=False):
        x, y = r * math.cos(t), k * r * math.sin(t)
        pts.append((x * c - y * s, x * s + y * c))
    return _Shape(polygons=(tuple(pts),))


def _crescent(r: float, angle: float, rng: np.random.Generator) -> _Shape:
    d = rng.uniform(0.35, 0.55) * r  # the bite: a disc of radius r shifted by d, cut out
    pts = []
    for t in np.linspace(-math.pi, math.pi, 40, endpoint=False):  # outer arc, then inner arc back
        x, y = r * math.cos(t), r * math.sin(t)
        if (x - d) ** 2 + y**2 >= r * r:
            pts.append((x, y))
    inner = []
    for t in np.linspace(math.pi, -math.pi, 40, endpoint=False):
        x, y = d + r * math.cos(t), r * math.sin(t)
        if x * x + y * y <= r * r:
            inner.append((x, y))
    c, s = math.cos(angle), math.sin(angle)
    poly = [(x * c - y * s, x * s + y * c) for x, y in pts + inner]
    return _Shape(polygons=(tuple(poly),))


_DISTRACTOR_SHAPES = (_pentagon, _hexagon, _ellipse, _crescent)


def _pattern_mask(
    pattern: str, alpha: np.ndarray, ox: float, oy: float, r: float, angle: float
) -> np.ndarray:
    """Where the pattern's second colour goes, in the object's patch (1 = pattern colour).

    ``(ox, oy)`` is the object's centre in patch pixels; patterns turn with the object and scale
    with its size (never finer than ``_MIN_PERIOD`` pixels)."""
    h, w = alpha.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    c, s = math.cos(angle), math.sin(angle)
    u = (xx - ox) * c + (yy - oy) * s
    v = -(xx - ox) * s + (yy - oy) * c
    if pattern == "plain":
        return np.zeros_like(alpha)
    if pattern == "striped":
        period = max(_MIN_PERIOD, 0.55 * r)
        return (np.sin(2 * math.pi * u / period) > 0).astype(np.float32)
    if pattern == "dotted":
        period = max(_MIN_PERIOD + 1, 0.6 * r)
        du, dv = np.mod(u, period) - period / 2, np.mod(v, period) - period / 2
        return (du * du + dv * dv < (0.3 * period) ** 2).astype(np.float32)
    if pattern == "checkered":  # the distractors' pattern: never a class
        period = max(_MIN_PERIOD, 0.5 * r)
        return (np.mod(np.floor(u / period) + np.floor(v / period), 2) == 1).astype(np.float32)
    if pattern == "framed":  # a band along the outline, inside the shape
        band = max(1, round(0.22 * r))
        solid = Image.fromarray((alpha >= 0.5).astype(np.uint8) * 255)
        inner = np.asarray(solid.filter(ImageFilter.MinFilter(2 * band + 1)), dtype=np.float32) / 255.0
        return np.clip((alpha >= 0.5).astype(np.float32) - inner, 0.0, 1.0)
    raise ValueError(f"unknown pattern {pattern!r}")


def _draw(
    rng: np.random.Generator, img: np.ndarray, owner: np.ndarray, shape: _Shape, pattern: str,
    cx: float, cy: float, r: float, angle: float, index: int,
) -> float | None:  # fmt: skip
    """Composite one object onto ``img``; mark its pixels in ``owner``. Returns its full area."""
    alpha, px, py = _shape_alpha(shape, cx, cy)
    area = float((alpha >= 0.5).sum())
    size = img.shape[0]
    h, w = alpha.shape
    ix0, iy0, ix1, iy1 = max(px, 0), max(py, 0), min(px + w, size), min(py + h, size)
    if area < 4 or ix1 <= ix0 or iy1 <= iy0:
        return None
    mask = _pattern_mask(pattern, alpha, cx - px, cy - py, r, angle)
    sub = (slice(iy0 - py, iy1 - py), slice(ix0 - px, ix1 - px))
    a, m = alpha[sub], mask[sub]
    region = img[iy0:iy1, ix0:ix1]
    base = _contrasting_color(rng, region[a >= 0.5])
    second = _contrasting_color(rng, base[None, :])  # the pattern stands out from the object
    fill = (
        _object_fill(rng, base, a.shape) * (1 - m[..., None])
        + _object_fill(rng, second, a.shape) * m[..., None]
    )
    region *= 1.0 - a[..., None]
    region += fill * a[..., None]
    owner[iy0:iy1, ix0:ix1][a >= 0.5] = index
    return area


def _render_hard(rng: np.random.Generator, size: int) -> tuple[Image.Image, list[tuple]]:
    """Draw one image of the hard preset; return it and its labels ``(cls, xc, yc, w, h)``."""
    img = _background(rng, size)
    _draw_clutter(rng, img)
    _draw_clutter(rng, img)

    n_obj = int(rng.integers(_MIN_OBJECTS, _MAX_OBJECTS + 1))
    n_dis = int(rng.integers(_MIN_DISTRACTORS, _MAX_DISTRACTORS + 1))
    kinds = rng.permutation(np.array([True] * n_obj + [False] * n_dis))  # True: a labelled object
    owner = np.full((size, size), -1, dtype=np.int32)
    objects: list[tuple[int, tuple[float, float, float, float], float, int]] = []  # cls, box, area, index
    placed: list[tuple[float, float, float]] = []
    for index, labelled in enumerate(kinds):
        r = 0.5 * size * math.exp(rng.uniform(math.log(_MIN_SIZE), math.log(_MAX_SIZE)))
        for _attempt in range(10):
            cx, cy = rng.uniform(0.4 * r, size - 0.4 * r, 2)
            if all(math.hypot(cx - x, cy - y) > _SEPARATION * (r + rr) for x, y, rr in placed):
                break
        else:
            continue
        angle = rng.uniform(0, 2 * math.pi)
        if labelled:
            cls = int(rng.integers(len(HARD_CLASSES)))
            shape = _SHAPES[cls // len(PATTERNS)](r, angle, rng)
            pattern = PATTERNS[cls % len(PATTERNS)]
        elif rng.random() < 0.6:  # a shape outside the class set, with any pattern
            shape = _DISTRACTOR_SHAPES[int(rng.integers(len(_DISTRACTOR_SHAPES)))](r, angle, rng)
            pattern = (*PATTERNS, "checkered")[int(rng.integers(len(PATTERNS) + 1))]
        else:  # a class shape with a pattern outside the set
            shape = _SHAPES[int(rng.integers(len(_SHAPES)))](r, angle, rng)
            pattern = "checkered"
        area = _draw(rng, img, owner, shape, pattern, cx, cy, r, angle, index)
        if area is None:
            continue
        placed.append((cx, cy, r))
        if labelled:
            x0, y0, x1, y1 = shape.extent()
            box = (max(cx + x0, 0.0), max(cy + y0, 0.0), min(cx + x1, float(size)), min(cy + y1, float(size)))
            objects.append((cls, box, area, index))

    return _finish(rng, img, blur_max=0.7), _visible_labels(objects, owner, size, _MAX_HIDDEN, 3)


HARD = Preset(
    "hard", HARD_CLASSES, _render_hard, 1, 600, 150, 224,
    "24 fine-grained classes (shape x pattern), 6-24 small crowded objects, distractors, strong clutter",
)  # fmt: skip
