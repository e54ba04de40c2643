"""Calibration: preprocessing equal to Ultralytics', deterministic sources, recipes as data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeprune.calibration import CalibrationData, load_recipe, recipe_names, sample, source_images
from edgeprune.calibration.preprocess import letterbox, to_input
from edgeprune.errors import ConfigError, EdgepruneError
from edgeprune.targets import list_targets


@pytest.mark.parametrize(
    "shape", [(480, 640), (640, 480), (100, 37), (37, 100), (641, 641), (63, 64), (1, 300)]
)
@pytest.mark.parametrize("imgsz", [64, 160, 640])
def test_letterbox_equals_ultralytics(shape, imgsz):
    pytest.importorskip("ultralytics")
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(sum(shape) + imgsz)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    # what Ultralytics' predictor/validator does for a fixed-shape exported model
    expected = LetterBox(imgsz, auto=False, stride=32)(image=image.copy())
    got, info = letterbox(image, imgsz)
    assert got.shape == (imgsz, imgsz, 3)
    assert np.array_equal(got, expected)
    assert 0 < info.ratio and info.shape == shape


def test_to_input_is_rgb_chw_unit_range():
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    x = to_input(image)
    assert x.shape == (3, 4, 4) and x.dtype == np.float32
    assert x[2].max() == 1.0 and x[0].max() == 0.0  # blue ends in the last (B of RGB) channel


def test_sources_folder_and_data_yaml_are_deterministic(tiny_data, tmp_path):
    train = source_images(tiny_data)  # the train split by default
    val = source_images(tiny_data, split="val")
    assert len(train) == 16 and len(val) == 8 and not set(train) & set(val)
    folder = source_images(Path(tiny_data).parent / "images" / "train")
    assert folder == train
    a, b = sample(train, 5, seed=1), sample(list(reversed(train)), 5, seed=1)
    assert a == b and len(set(a)) == 5
    assert sample(train, 5, seed=2) != a
    assert sample(train, 100) == sorted(train)

    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(p) for p in val[:3]))
    data = tmp_path / "data.yaml"
    data.write_text(f"path: {tmp_path}\ntrain: [list.txt]\nnames: {{0: a}}\n")
    assert source_images(data) == sorted(val[:3])


def test_calibration_data_batches(tiny_data):
    data = CalibrationData.from_source(tiny_data, 64, 5, seed=0)
    assert len(data) == 5
    batches = list(data.batches(2))
    assert [b.shape for b in batches] == [(2, 3, 64, 64), (2, 3, 64, 64), (1, 3, 64, 64)]
    assert all(b.dtype == np.float32 and 0 <= b.min() and b.max() <= 1 for b in batches)
    again = np.concatenate(list(CalibrationData.from_source(tiny_data, 64, 5, seed=0).batches(5)))
    assert np.array_equal(np.concatenate(batches), again)


def test_source_errors(tmp_path, tiny_data):
    with pytest.raises(EdgepruneError, match="not found"):
        source_images(tmp_path / "missing")
    with pytest.raises(EdgepruneError, match="no images"):
        source_images(tmp_path)
    with pytest.raises(EdgepruneError, match="no 'test' split"):
        source_images(tiny_data, split="test")


def test_shipped_recipes_match_their_targets():
    names = recipe_names()
    assert {"yolo-onnxruntime-int8", "yolo-openvino-int8", "yolo-tflite-int8", "yolo-tensorrt-int8"} <= set(
        names
    )
    for target in list_targets():
        if target.precision == "int8":
            recipe = load_recipe(target.calibration)
            assert recipe.runtime == target.runtime, target.name
            assert "box_decode" in recipe.keep_float


def test_bad_recipe_names_file_field_and_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nruntime: onnxruntime\nmethod: kl\nimages: 0\nkeep_float_nodes: ['(']\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(path)
    text = str(e.value)
    assert f"{path}: method:" in text and "(line 3)" in text
    assert f"{path}: images: expected a number greater than or equal to 1, got 0 (line 4)" in text
    assert "keep_float_nodes" in text and "not one" in text
    with pytest.raises(ConfigError, match="unknown calibration recipe 'nope'; known: yolo-onnxruntime-int8"):
        load_recipe("nope")
