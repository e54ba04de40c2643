"""Image preprocessing identical to Ultralytics' inference path for static-shape models.

Ultralytics' predictor and validator feed an exported (fixed-shape) model with a centred
letterbox: resize by ``r = min(S / h, S / w)`` with bilinear interpolation, pad with grey 114 to
``S x S`` (padding split as ``round(d - 0.1)`` / ``round(d + 0.1)``), then BGR -> RGB, HWC -> CHW
and divide by 255. Calibration batches must see exactly this, or the activation ranges that
INT8 calibration measures are not the ones the device sees; ``tests/test_calibration.py``
compares these functions with Ultralytics' own ``LetterBox`` byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAD_VALUE = 114
IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})


def _cv2():
    import cv2  # a core dependency (opencv-python, the same distribution Ultralytics uses)

    return cv2


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted: scale ``ratio`` and the ``(left, top)`` padding, to map boxes back."""

    ratio: float
    pad: tuple[int, int]
    shape: tuple[int, int]  # original (h, w)


def letterbox(image: np.ndarray, imgsz: int, *, scaleup: bool = True) -> tuple[np.ndarray, Letterbox]:
    """Fit an HWC uint8 image into ``imgsz x imgsz``: bilinear resize keeping the aspect, grey padding."""
    cv2 = _cv2()
    h, w = image.shape[:2]
    r = min(imgsz / h, imgsz / w)
    if not scaleup:
        r = min(r, 1.0)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (imgsz - new_w) / 2, (imgsz - new_h) / 2
    if (w, h) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return image, Letterbox(r, (left, top), (h, w))


def to_input(image_bgr: np.ndarray) -> np.ndarray:
    """A letterboxed HWC BGR uint8 image as the model's CHW RGB float32 input in [0, 1]."""
    return np.ascontiguousarray(image_bgr[..., ::-1].transpose(2, 0, 1), dtype=np.float32) / 255.0


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as HWC BGR uint8 (what Ultralytics reads), or raise with the path."""
    from edgeprune.errors import EdgepruneError

    cv2 = _cv2()
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgepruneError(f"cannot read image {path}")
    return image


def preprocess(path: str | Path, imgsz: int) -> np.ndarray:
    """One image file as a (3, imgsz, imgsz) float32 model input."""
    return to_input(letterbox(read_image(path), imgsz)[0])
