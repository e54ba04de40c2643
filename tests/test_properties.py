"""Property-based tests (hypothesis) of the pieces every run goes through: the YAML loaders take any
bytes and answer with a value or edgeprune's own error; the letterbox keeps every image's aspect inside
the model's square; timing statistics are ordered; the report writer always writes strict JSON."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeprune.errors import EdgepruneError

SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

# YAML-shaped values: what a user can write in a file, nested
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
TARGET_KEYS = ["name", "description", "device", "runtime", "precision", "imgsz", "batch", "threads", "round_to",
               "budget", "calibration", "profiling"]  # fmt: skip
target_like = st.dictionaries(st.sampled_from(TARGET_KEYS) | st.text(max_size=8), values, max_size=12)
documents = (
    st.binary(max_size=400)
    | st.text(max_size=400).map(str.encode)
    | values.map(lambda v: yaml.safe_dump(v).encode())
    | target_like.map(lambda v: yaml.safe_dump(v).encode())
)


def _in_file(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp())
    path = folder / name
    path.write_bytes(data)
    return path


def _target(path: Path) -> None:
    from edgeprune.targets import validate_target_file

    validate_target_file(path)


def _recipe(path: Path) -> None:
    from edgeprune.recipe import load_recipe

    load_recipe(path)


def _calibration(path: Path) -> None:
    from edgeprune.calibration.recipes import load_recipe

    load_recipe(path)


def _hosts(path: Path) -> None:
    from edgeprune.profiling.remote import load_hosts_file

    hosts = load_hosts_file(path)
    assert hosts and all(h.host for h in hosts)


def _data(path: Path) -> None:
    from edgeprune.data.check import read_yaml_mapping

    assert isinstance(read_yaml_mapping(path, "--data", "a data.yaml"), dict)


# each loader: what it reads a file into (and checks), the file's name, what a refusal must say
LOADERS = {
    "target": (_target, "t.yaml", lambda m: "t.yaml" in m),
    "recipe": (_recipe, "r.yaml", lambda m: "r.yaml" in m),
    "calibration-recipe": (_calibration, "c.yaml", lambda m: "c.yaml" in m),
    "hosts": (_hosts, "h.yaml", lambda m: "h.yaml" in m or "not a host" in m),
    "data-yaml": (_data, "d.yaml", lambda m: "--data" in m and "d.yaml" in m),
}


@pytest.mark.parametrize("loader", list(LOADERS))
@SETTINGS
@given(data=documents)
def test_a_yaml_file_is_read_or_refused_with_its_name(loader, data):
    load, name, names_it = LOADERS[loader]
    try:
        load(_in_file(data, name))
    except EdgepruneError as e:
        assert names_it(str(e)), str(e)


@SETTINGS
@given(
    h=st.integers(1, 400),
    w=st.integers(1, 400),
    imgsz=st.sampled_from([32, 64, 96, 160, 320]),
    scaleup=st.booleans(),
    fill=st.integers(0, 255),
)
def test_the_letterbox_fits_any_image_into_the_square_keeping_its_aspect(h, w, imgsz, scaleup, fill):
    from edgeprune.calibration.preprocess import PAD_VALUE, letterbox, to_input

    image = np.full((h, w, 3), fill, dtype=np.uint8)
    out, box = letterbox(image, imgsz, scaleup=scaleup)
    assert out.shape == (imgsz, imgsz, 3) and out.dtype == np.uint8
    new_w, new_h = max(round(w * box.ratio), 1), max(round(h * box.ratio), 1)
    assert (
        new_w <= imgsz
        and new_h <= imgsz
        and (new_w == imgsz or new_h == imgsz or not scaleup or box.ratio <= 1)
    )
    assert abs(new_w / new_h - w / h) <= max(1 / new_h, 1 / new_w) * (w / h) + 1e-9 or min(new_w, new_h) == 1
    left, top = box.pad
    assert (out[top : top + new_h, left : left + new_w] == fill).all()  # the image, where the pad says
    if top > 0:
        assert (out[:top] == PAD_VALUE).all()
    x = to_input(out)
    assert x.shape == (3, imgsz, imgsz) and 0.0 <= x.min() and x.max() <= 1.0


@SETTINGS
@given(st.lists(st.floats(min_value=1e-3, max_value=1e4, allow_nan=False), min_size=1, max_size=300))
def test_timing_statistics_are_ordered_and_the_verdict_follows_them(samples):
    from edgeprune.profiling import LatencyStats, judge

    s = LatencyStats.from_samples(samples)
    assert s.n == len(samples)
    assert s.min <= s.p50 <= s.p90 <= s.p99 <= s.max
    assert s.min * (1 - 1e-12) <= s.mean <= s.max * (1 + 1e-12)  # a mean of equal values is an ulp off
    assert s.std >= 0 and s.cv >= 0 and s.outliers >= 0
    budget = float(np.median(samples))
    v = judge(s, budget, "p90")
    assert v.passed == (s.p90 <= budget)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@SETTINGS
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_the_report_writer_always_writes_strict_json(extra):
    from edgeprune.report.json import write_report

    folder = Path(tempfile.mkdtemp())
    path = write_report({"result": {"latency_ms": None}, **extra}, folder / "report.json")
    loaded = _strict(path.read_text())

    def same(a, b):
        if isinstance(a, float) and not math.isfinite(a):
            return b is None
        if isinstance(a, dict):
            return set(map(str, a)) == set(b) and all(same(v, b[str(k)]) for k, v in a.items())
        if isinstance(a, (list, tuple)):
            return len(a) == len(b) and all(map(same, a, b))
        return a == b

    assert same({"result": {"latency_ms": None}, **extra}, loaded)
    assert [p.name for p in folder.iterdir()] == ["report.json"]  # no temporary file left


@pytest.mark.parametrize("cores", [1, 2])
def test_threads_over_the_cpus_warn(cores, monkeypatch):
    from edgeprune.profiling import LatencyStats, trust

    monkeypatch.setattr(trust, "usable_cpus", lambda: list(range(cores)))
    calm = LatencyStats.from_samples([1.0, 1.01, 0.99, 1.0])
    assert trust.timing_warnings(calm, cores) == []
    assert "4 threads" in trust.timing_warnings(calm, 4)[0]
    spread = LatencyStats.from_samples([1.0, 2.0, 0.5, 1.5])
    assert any("cv" in w for w in trust.timing_warnings(spread, None))
    busy = trust.CpuWatch(cores, wall_s=1.0, others_cores=0.9)
    assert any("other processes" in w for w in trust.timing_warnings(calm, 1, busy))
