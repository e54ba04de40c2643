"""Targets are data: every shipped file validates, and every bad file fails with path + field."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest
import yaml

from edgeprune.errors import ConfigError
from edgeprune.resources import data_dir
from edgeprune.runtimes import RUNTIMES
from edgeprune.targets import (
    Target,
    list_targets,
    load_target,
    target_names,
    validate_target_file,
)

SHIPPED = sorted(data_dir("targets").glob("*.yaml"))

VALID = {
    "name": "my-box",
    "description": "test target",
    "device": {"kind": "x86-cpu", "name": "Test CPU"},
    "runtime": "onnxruntime",
    "precision": "int8",
    "imgsz": 640,
    "batch": 1,
    "threads": 4,
    "round_to": 8,
    "budget": {"latency_ms": 12.0, "percentile": "p50"},
    "calibration": "yolo-onnxruntime-int8",
    "profiling": {"warmup": 2, "iterations": 10, "min_time_s": 0.5},
}


def write(tmp_path: Path, data: object, name: str = "my-box.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        validate_target_file(path)
    return str(info.value)


# --- shipped files ------------------------------------------------------------------------


def test_shipped_targets_exist():
    expected = {
        "cpu-ort-fp32",
        "cpu-ort-int8",
        "cpu-openvino-int8",
        "rpi5-tflite-int8",
        "jetson-orin-nano-trt-fp16",
        "jetson-orin-nano-trt-int8",
        "jetson-agx-orin-trt-fp16",
    }
    assert expected <= set(target_names())


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_target_validates(path: Path):
    target = validate_target_file(path)
    assert target.name == path.stem
    assert target.runtime in RUNTIMES.names()
    assert target.source == path
    if target.precision == "int8":
        assert target.calibration
    assert load_target(path.stem) == target
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), "a shipped target starts with a comment explaining its budget"


def test_list_targets_sorted_and_matches_names():
    targets = list_targets()
    names = [t.name for t in targets]
    assert names == sorted(names) == target_names()


# --- load_target --------------------------------------------------------------------------


def test_load_by_name_and_by_path(tmp_path: Path):
    by_name = load_target("cpu-ort-int8")
    shipped = data_dir("targets") / "cpu-ort-int8.yaml"
    assert load_target(shipped) == by_name
    assert load_target(str(shipped)) == by_name
    user = write(tmp_path, VALID)
    assert load_target(str(user)).name == "my-box"
    assert load_target(user).source == user
    assert load_target(by_name) is by_name


def test_load_relative_yaml_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write(tmp_path, VALID, name="box.yml")
    monkeypatch.chdir(tmp_path)
    assert load_target("box.yml").name == "my-box"  # user files may have any name


def test_unknown_name_lists_known_names():
    with pytest.raises(ConfigError) as info:
        load_target("jetson-nano")
    message = str(info.value)
    assert "jetson-nano" in message
    for name in target_names():
        assert name in message


def test_missing_file_is_config_error(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="no such file") as info:
        load_target(str(missing))
    assert str(missing) in str(info.value)


def test_shipped_name_must_equal_stem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "targets").mkdir()
    path = write(tmp_path / "targets", VALID, name="other-name.yaml")
    monkeypatch.setenv("EDGEPRUNE_HOME", str(tmp_path))
    message = error_of(path)
    assert f"{path}: name:" in message and "other-name" in message and "my-box" in message
    with pytest.raises(ConfigError):
        load_target("other-name")


def test_shipped_folder_via_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "targets").mkdir()
    for name in ("b-box", "a-box"):
        write(tmp_path / "targets", {**VALID, "name": name}, name=f"{name}.yaml")
    monkeypatch.setenv("EDGEPRUNE_HOME", str(tmp_path))
    assert target_names() == ["a-box", "b-box"]
    assert [t.name for t in list_targets()] == ["a-box", "b-box"]


# --- validation errors --------------------------------------------------------------------


def test_valid_user_file(tmp_path: Path):
    target = validate_target_file(write(tmp_path, VALID))
    assert target.budget.latency_ms == 12.0
    assert target.profiling.iterations == 10


def test_defaults(tmp_path: Path):
    data = copy.deepcopy(VALID)
    for key in ("description", "batch", "threads", "profiling"):
        del data[key]
    data["precision"], data["calibration"] = "fp32", None
    target = validate_target_file(write(tmp_path, data))
    assert (target.batch, target.threads, target.description) == (1, None, "")
    assert (target.profiling.warmup, target.profiling.iterations, target.profiling.min_time_s) == (
        10,
        100,
        2.0,
    )
    assert target.budget.memory_mb is None


def _set(data: dict, dotted: str, value: object) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    if value is _DELETE:
        del data[last]
    else:
        data[last] = value


_DELETE = object()

BAD = [
    # id, dotted field, bad value, text the message must also contain
    ("negative-budget", "budget.latency_ms", -3, "greater than 0"),
    ("zero-budget", "budget.latency_ms", 0, "greater than 0"),
    ("budget-wrong-type", "budget.latency_ms", "fast", "expected a number"),
    ("imgsz-wrong-type", "imgsz", "640", "expected an integer"),
    ("imgsz-float", "imgsz", 640.0, "expected an integer"),
    ("imgsz-not-multiple", "imgsz", 650, "multiple of 32"),
    ("imgsz-too-small", "imgsz", 0, "multiple of 32"),
    ("batch-zero", "batch", 0, "greater than or equal to 1"),
    ("threads-zero", "threads", 0, "greater than or equal to 1"),
    ("round-to-bool", "round_to", True, "expected an integer"),
    ("unknown-key", "colour", "red", "unknown field"),
    ("unknown-nested-key", "budget.memroy_mb", 5, "memory_mb"),
    ("bad-percentile", "budget.percentile", "p95", "'p50', 'p90', 'p99' or 'mean'"),
    ("unknown-runtime", "runtime", "onnx", "'onnxruntime'"),
    ("bad-precision", "precision", "int4", "'fp32', 'fp16' or 'int8'"),
    ("bad-device-kind", "device.kind", "gpu", "'x86-cpu'"),
    ("device-not-mapping", "device", "jetson", "mapping"),
    ("bad-name", "name", "My Box", "lowercase"),
    ("int8-without-calibration", "calibration", None, "int8"),
    ("int8-calibration-missing", "calibration", _DELETE, "int8"),
    ("missing-budget", "budget", _DELETE, "missing"),
    ("missing-latency", "budget.latency_ms", _DELETE, "missing"),
    ("negative-memory", "budget.memory_mb", -1, "greater than 0"),
    ("negative-warmup", "profiling.warmup", -1, "greater than or equal to 0"),
    ("zero-iterations", "profiling.iterations", 0, "greater than or equal to 1"),
    ("infinite-min-time", "profiling.min_time_s", float("inf"), "finite"),
]


@pytest.mark.parametrize(("field", "value", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_field_reports_path_and_field(tmp_path: Path, field: str, value: object, expected: str):
    data = copy.deepcopy(VALID)
    _set(data, field, value)
    path = write(tmp_path, data)
    message = error_of(path)
    assert f"{path}: {field}: " in message
    assert expected in message
    assert "Input should be" not in message


def test_message_format_is_exact(tmp_path: Path):
    data = copy.deepcopy(VALID)
    data["budget"]["latency_ms"] = -3
    path = write(tmp_path, data)
    line = error_of(path)
    assert line.startswith(f"{path}: budget.latency_ms: expected a number greater than 0, got -3")
    assert "(line " in line  # points into the file


def test_one_line_per_problem(tmp_path: Path):
    data = copy.deepcopy(VALID)
    data["budget"]["latency_ms"] = -3
    data["imgsz"] = 650
    data["colour"] = "red"
    path = write(tmp_path, data)
    lines = error_of(path).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert {line.split(": ")[1] for line in lines} == {"budget.latency_ms", "imgsz", "colour"}


def test_runtime_error_lists_registered_runtimes(tmp_path: Path):
    path = write(tmp_path, {**VALID, "runtime": "onnx"})
    message = error_of(path)
    for name in RUNTIMES.names():
        assert repr(name) in message


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path):
    path = write(tmp_path, "name: my-box\nbudget:\n  latency_ms: [1, 2\n  percentile: p50\n")
    message = error_of(path)
    assert message.startswith(f"{path}: line ")
    assert "column" in message and "invalid YAML" in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"], ids=["list", "text", "number"])
def test_non_mapping_file(tmp_path: Path, text: str):
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}: ") and "mapping" in message


def test_empty_file(tmp_path: Path):
    path = write(tmp_path, "# only a comment\n")
    message = error_of(path)
    assert str(path) in message and "empty" in message


def test_duplicate_key(tmp_path: Path):
    text = yaml.safe_dump(VALID, sort_keys=False) + "imgsz: 320\n"
    path = write(tmp_path, text)
    message = error_of(path)
    assert f"{path}: imgsz: duplicate key" in message


# --- the Target object --------------------------------------------------------------------


def test_target_is_frozen_and_hashable():
    target = load_target("cpu-ort-fp32")
    with pytest.raises(pydantic.ValidationError):
        target.imgsz = 320  # type: ignore[misc]
    assert hash(target) == hash(load_target("cpu-ort-fp32"))


def test_with_overrides_revalidates():
    target = load_target("jetson-orin-nano-trt-int8")
    smaller = target.with_overrides(imgsz=320, budget={"latency_ms": 4.0})
    assert smaller.imgsz == 320 and smaller.budget.latency_ms == 4.0
    assert smaller.budget.percentile == target.budget.percentile  # nested sections merge
    assert target.imgsz == 640 and target.budget.latency_ms == 6.0  # original untouched
    assert isinstance(smaller, Target)

    with pytest.raises(ConfigError, match=r"imgsz: expected a multiple of 32.*got 650"):
        target.with_overrides(imgsz=650)
    with pytest.raises(ConfigError, match=r"budget\.latency_ms"):
        target.with_overrides(budget={"latency_ms": -1})
    with pytest.raises(ConfigError, match="calibration"):
        target.with_overrides(calibration=None)  # int8 needs a recipe
    with pytest.raises(ConfigError, match="bogus: unknown field"):
        target.with_overrides(bogus=1)
    with pytest.raises(ConfigError, match=target.name):
        target.with_overrides(runtime="nope")

    assert target.with_overrides(precision="fp16", calibration=None).calibration is None


def test_summary_is_readable():
    target = load_target("rpi5-tflite-int8")
    text = target.summary()
    assert text.splitlines()[0].startswith("rpi5-tflite-int8")
    for piece in ("tflite", "int8", "320", "p90", f"{target.budget.latency_ms:g} ms", "yolo-tflite-int8"):
        assert piece in text
    assert len(text.splitlines()) > 5


def test_loading_targets_imports_no_backend():
    """Validating runtime names must not import any optional backend (backends are optional)."""
    code = (
        "import sys, edgeprune.targets as t; t.list_targets(); "
        "heavy = {'tensorrt', 'openvino', 'tensorflow', 'ultralytics', 'ai_edge_litert'}; "
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
