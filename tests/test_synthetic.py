"""Tests for the synthetic shape-detection dataset (edgeprune.data.synthetic)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeprune.data import CLASS_NAMES, make_synthetic_dataset, synthetic
from edgeprune.errors import OptionError

TINY = {"n_train": 12, "n_val": 4, "imgsz": 64}


def _digest(root: Path) -> dict[str, str]:
    """Hash of every generated file, keyed by its path relative to ``root`` (path-independent)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "data.yaml":  # data.yaml holds the absolute path
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _labels(root: Path, split: str) -> dict[str, list[list[str]]]:
    return {
        p.stem: [line.split() for line in p.read_text().splitlines()]
        for p in sorted((root / "labels" / split).glob("*.txt"))
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    make_synthetic_dataset(root, **TINY, seed=0)
    return root


def test_returns_data_yaml_and_layout(tiny: Path) -> None:
    yaml_path = make_synthetic_dataset(tiny, **TINY, seed=0)  # reuses
    assert yaml_path == tiny.resolve() / "data.yaml"
    for split, n in (("train", TINY["n_train"]), ("val", TINY["n_val"])):
        images = sorted((tiny / "images" / split).glob("*.png"))
        assert len(images) == n
        for img in images:
            assert (tiny / "labels" / split / f"{img.stem}.txt").is_file()
            with Image.open(img) as im:
                assert im.size == (TINY["imgsz"], TINY["imgsz"]) and im.mode == "RGB"


def test_data_yaml_keys(tiny: Path) -> None:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((tiny / "data.yaml").read_text())
    assert data["path"] == str(tiny.resolve())
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert data["nc"] == len(CLASS_NAMES) == 6
    assert data["names"] == dict(enumerate(CLASS_NAMES))


def test_labels_valid(tiny: Path) -> None:
    n_objects = 0
    for split in ("train", "val"):
        for stem, rows in _labels(tiny, split).items():
            for row in rows:
                assert len(row) == 5, (split, stem, row)
                cls = int(row[0])
                xc, yc, w, h = map(float, row[1:])
                assert 0 <= cls < len(CLASS_NAMES)
                assert all(0.0 <= v <= 1.0 for v in (xc, yc, w, h))
                assert w > 0 and h > 0
                # The box lies inside the image (boxes are clipped).
                assert xc - w / 2 >= -1e-6 and xc + w / 2 <= 1 + 1e-6
                assert yc - h / 2 >= -1e-6 and yc + h / 2 <= 1 + 1e-6
                n_objects += 1
    assert n_objects >= TINY["n_train"] + TINY["n_val"]  # 1-6 objects per image, few dropped


def test_deterministic_and_seed_dependent(tmp_path: Path, tiny: Path) -> None:
    again = make_synthetic_dataset(tmp_path / "again", **TINY, seed=0).parent
    assert _digest(again) == _digest(tiny)
    other = make_synthetic_dataset(tmp_path / "other", **TINY, seed=1).parent
    d_other = _digest(other)
    assert d_other.keys() == _digest(tiny).keys()
    assert all(d_other[k] != v for k, v in _digest(tiny).items() if k.startswith("images/"))


def test_n_val_does_not_change_train(tmp_path: Path, tiny: Path) -> None:
    more_val = make_synthetic_dataset(tmp_path / "v", **{**TINY, "n_val": 7}, seed=0).parent
    train = {k: v for k, v in _digest(tiny).items() if "/train/" in k}
    assert train == {k: v for k, v in _digest(more_val).items() if "/train/" in k}


def test_reuse_mismatch_and_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    yaml_path = make_synthetic_dataset(root, **TINY, seed=3)
    stamp = json.loads((root / "synthetic.json").read_text())
    assert stamp["complete"] is True and stamp["seed"] == 3 and stamp["n_train"] == TINY["n_train"]

    # Same parameters: reused, nothing rewritten.
    probe = root / "images" / "train" / "000000.png"
    os.utime(probe, (1, 1))
    assert make_synthetic_dataset(root, **TINY, seed=3) == yaml_path
    assert probe.stat().st_mtime == 1

    # Different parameters without overwrite: a clear error naming what differs.
    with pytest.raises(OptionError, match="seed=3.*`overwrite`"):
        make_synthetic_dataset(root, **TINY, seed=4)
    with pytest.raises(OptionError, match="n_train"):
        make_synthetic_dataset(root, **{**TINY, "n_train": 5}, seed=3)

    # overwrite=True regenerates with the new parameters and drops stale files and caches.
    (root / "labels" / "train.cache").write_text("stale")
    make_synthetic_dataset(root, **{**TINY, "n_train": 5}, seed=3, overwrite=True)
    assert len(list((root / "images" / "train").glob("*.png"))) == 5
    assert len(list((root / "labels" / "train").glob("*.txt"))) == 5
    assert not (root / "labels" / "train.cache").exists()
    assert json.loads((root / "synthetic.json").read_text())["n_train"] == 5


def test_moved_dataset_gets_its_path_updated(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    make_synthetic_dataset(tmp_path / "a", **TINY)
    (tmp_path / "a").rename(tmp_path / "b")
    yaml_path = make_synthetic_dataset(tmp_path / "b", **TINY)
    assert yaml.safe_load(yaml_path.read_text())["path"] == str((tmp_path / "b").resolve())


def test_incomplete_run_is_redone(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_synthetic_dataset(root, **TINY)
    reference = _digest(root)
    (root / "images" / "val" / "000001.png").unlink()  # e.g. an interrupted or damaged run
    make_synthetic_dataset(root, **TINY)
    assert _digest(root) == reference


def test_refuses_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(OptionError, match="not made by make_synthetic_dataset"):
        make_synthetic_dataset(tmp_path, **TINY)
    make_synthetic_dataset(tmp_path, **TINY, overwrite=True)
    assert (tmp_path / "data.yaml").is_file()


@pytest.mark.parametrize("kwargs", [{"n_train": 0}, {"n_val": 0}, {"imgsz": 8}, {"seed": -1}])
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(OptionError):
        make_synthetic_dataset(tmp_path, **{**TINY, **kwargs})


def test_all_classes_appear(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path, n_train=60, n_val=4, imgsz=64).parent
    classes = {int(row[0]) for rows in _labels(root, "train").values() for row in rows}
    assert classes == set(range(len(CLASS_NAMES)))


def test_boxes_tight_around_drawn_shape() -> None:
    """The geometric box matches the rasterized shape within a pixel, for every shape and angle."""
    rng = np.random.default_rng(0)
    for cls, make in enumerate(synthetic._SHAPES):
        for _ in range(20):
            r = float(rng.uniform(5, 40))
            cx, cy = rng.uniform(0, 100, 2)
            shape = make(r, float(rng.uniform(0, 2 * np.pi)), rng)
            alpha, px, py = synthetic._shape_alpha(shape, float(cx), float(cy))
            x0, y0, x1, y1 = shape.extent()
            geom = (cx + x0, cy + y0, cx + x1, cy + y1)
            # Pixels the shape touches at all: tight to within a pixel (plus Pillow's rounding).
            ys, xs = np.nonzero(alpha > 0)
            touched = (px + xs.min(), py + ys.min(), px + xs.max() + 1, py + ys.max() + 1)
            assert np.allclose(touched, geom, atol=1.5), (CLASS_NAMES[cls], touched, geom)
            # Pixels mostly covered: only the thin tips of stars and triangles fall short.
            ys, xs = np.nonzero(alpha >= 0.5)
            covered = (px + xs.min(), py + ys.min(), px + xs.max() + 1, py + ys.max() + 1)
            assert np.allclose(covered, geom, atol=2.5), (CLASS_NAMES[cls], covered, geom)


def test_generation_is_fast(tmp_path: Path) -> None:
    import time

    t = time.perf_counter()
    make_synthetic_dataset(tmp_path, n_train=40, n_val=10, imgsz=160)
    assert time.perf_counter() - t < 10.0  # ~0.3 s expected; generous for a loaded CI machine


def test_accepted_by_ultralytics(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_AUTOINSTALL", "0")
    pytest.importorskip("ultralytics")
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(tiny / "data.yaml"))
    assert data["nc"] == len(CLASS_NAMES)
    assert [data["names"][i] for i in range(len(CLASS_NAMES))] == list(CLASS_NAMES)
    assert Path(data["train"]).resolve() == (tiny / "images" / "train").resolve()
    assert Path(data["val"]).resolve() == (tiny / "images" / "val").resolve()


# sha256 over (path, file hash) of `make_synthetic_dataset(root, **TINY, seed=0)` as written before
# presets existed: the easy set, the demo's baseline was trained on, must not change by a byte
EASY_TINY_FINGERPRINT = "6204d241728d1244afdbb51568a00f8a3d5378fa9bd8d4f81e797cb25f98abf2"


def test_easy_preset_is_byte_identical_to_the_set_before_presets(tiny: Path) -> None:
    h = hashlib.sha256()
    for path, digest in _digest(tiny).items():
        h.update(path.encode())
        h.update(bytes.fromhex(digest))
    assert h.hexdigest() == EASY_TINY_FINGERPRINT


@pytest.fixture(scope="module")
def hard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hard")
    make_synthetic_dataset(root, preset="hard", n_train=24, n_val=6, imgsz=128, seed=0)
    return root


def test_hard_preset_has_fine_grained_classes_told_apart_by_pattern(hard: Path) -> None:
    yaml = pytest.importorskip("yaml")
    from edgeprune.data.hard import HARD_CLASSES, PATTERNS

    data = yaml.safe_load((hard / "data.yaml").read_text())
    assert data["nc"] == len(HARD_CLASSES) == 24 >= 20
    assert data["names"][0] == "circle-plain" and data["names"][23] == "ring-framed"
    assert {name.split("-")[1] for name in HARD_CLASSES} == set(PATTERNS)
    stamp = json.loads((hard / "synthetic.json").read_text())
    assert stamp["preset"] == "hard" and stamp["imgsz"] == 128


def test_hard_preset_has_many_small_objects_and_is_deterministic(hard: Path, tmp_path: Path) -> None:
    rows = [row for labels in _labels(hard, "train").values() for row in labels]
    assert len(rows) / 24 >= 6  # 6-24 objects an image, some hidden by others
    sides = np.array([max(float(r[3]), float(r[4])) for r in rows])
    assert np.median(sides) < 0.15 and (sides < 0.08).mean() > 0.2  # most objects are small
    assert len({int(r[0]) for r in rows}) >= 20  # nearly every class in 24 images
    again = make_synthetic_dataset(tmp_path / "again", preset="hard", n_train=24, n_val=6, imgsz=128, seed=0)
    assert _digest(again.parent) == _digest(hard)


def test_hard_preset_draws_unlabelled_distractors(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeprune.data import hard

    drawn: list[str] = []
    original = hard._draw

    def spy(rng, img, owner, shape, pattern, *args):
        drawn.append(pattern)
        return original(rng, img, owner, shape, pattern, *args)

    monkeypatch.setattr(hard, "_draw", spy)
    labels = sum(len(hard._render_hard(np.random.default_rng([5, 0, i]), 128)[1]) for i in range(10))
    assert "checkered" in drawn  # a pattern outside the class set
    assert len(drawn) >= labels + 2 * 10  # at least 2 distractors an image, never labelled


def test_framed_pattern_is_a_band_along_the_outline() -> None:
    from edgeprune.data.hard import _pattern_mask

    yy, xx = np.mgrid[0:41, 0:41] + 0.5
    disc = ((xx - 20.5) ** 2 + (yy - 20.5) ** 2 <= 18**2).astype(np.float32)
    band = _pattern_mask("framed", disc, 20.5, 20.5, 18.0, 0.0)
    dist = np.hypot(xx - 20.5, yy - 20.5)
    assert band[dist < 12].sum() == 0 and band[(dist > 15) & (dist < 17.5)].mean() > 0.9
