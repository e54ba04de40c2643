"""Sensitivity analysis: each group pruned alone, measured; analysis.json round-trips; the search ranks by it."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("ultralytics")

from edgeprune.api import analyze, resolve_target  # noqa: E402
from edgeprune.errors import EdgepruneError  # noqa: E402
from edgeprune.models import load_model  # noqa: E402
from edgeprune.pruning import PruneConfig, prune_detector  # noqa: E402
from edgeprune.pruning.pruner import prunable_groups  # noqa: E402
from edgeprune.pruning.sensitivity import Analysis, GroupSensitivity, Point  # noqa: E402

from conftest import run_cli  # noqa: E402

TARGET = resolve_target("cpu-ort-fp32", imgsz=64).with_overrides(round_to=8, threads=1)


def macs_meter(det, name):
    """Latency linear in MACs plus a fixed cost."""
    return 1.0 + det.count(64)["macs"] / 1e8


def test_each_group_is_pruned_alone_and_measured(tmp_path, tiny_data):
    det = load_model("yolov8n.yaml", nc=6)
    groups = prunable_groups(det, 8)
    names = [n for n, _ in groups]
    assert len(names) == len(set(names)) and all(c > 8 for _, c in groups)
    halves = [n for n in names if ".cv_a." in n or ".cv_b." in n]
    assert halves and len({n.split(".cv_")[0] for n in halves}) == len(
        halves
    )  # one half each: both prune alike
    chosen = [names[2], halves[0]]
    analysis = analyze(
        "yolov8n.yaml", TARGET, data=tiny_data, ratios=(0.25, 0.5), groups=chosen, out=tmp_path,
        meter=macs_meter, say=lambda _: None,
    )  # fmt: skip
    assert [g.name for g in analysis.groups] == chosen
    base_macs = analysis.baseline["macs"]
    for g in analysis.groups:
        assert [p.ratio for p in g.points] == [0.25, 0.5]
        kept = [p.kept for p in g.points]
        assert kept[0] > kept[1] and all(k % 8 == 0 for k in kept)
        assert all(p.macs < base_macs and p.saved_ms > 0 for p in g.points)  # the fake meter follows MACs
    again = Analysis.load(tmp_path / "analysis.json")
    assert again.to_dict() == json.loads(json.dumps(analysis.to_dict()))


def _analysis(costs: dict[str, float], channels: dict[str, int] | None = None) -> Analysis:
    groups = [
        GroupSensitivity(name, (channels or {}).get(name, 64), [Point(0.5, 0, 0, 1.0, 1.0, 0.0, cost, None)])
        for name, cost in costs.items()
    ]
    return Analysis("m", "t", "onnxruntime", "fp32", 64, 8, "l2", [0.5], {}, groups)


def test_measured_costs_decide_which_groups_lose_channels():
    det = load_model("yolov8n.yaml", nc=6)
    widths = dict(prunable_groups(det, 8))
    names = list(widths)
    cheap = names[3]
    costs = _analysis({n: (0.0 if n == cheap else 5.0) for n in names}, widths)
    report = prune_detector(det.clone(), PruneConfig(0.002, "l2", "global", 0.6, 8), imgsz=64, costs=costs)
    assert list(report.groups) == [cheap]  # a little pruning: all from the only free group
    report = prune_detector(det, PruneConfig(0.02, "l2", "global", 0.6, 8), imgsz=64, costs=costs)
    # more: the free group first gives all it may (60%, the kept count rounded up to 8), then the others
    assert report.groups[cheap] == math.ceil(widths[cheap] * 0.4 / 8) * 8 and len(report.groups) > 1
    unmeasured = _analysis({cheap: 0.0}, widths)
    report = prune_detector(load_model("yolov8n.yaml", nc=6), PruneConfig(0.3, "l2", "global", 0.6, 8),
                            imgsz=64, costs=unmeasured)  # fmt: skip
    assert list(report.groups) == [cheap]  # groups the analysis did not measure stay whole


def test_cost_per_ms_interpolates_from_no_change():
    g = GroupSensitivity(
        "g", 100, [Point(0.5, 50, 0, 9.0, 2.0, 0.0, 1.0), Point(0.25, 75, 0, 9.5, 0.0, 0.0, 0.2)]
    )
    assert g.cost_per_ms(0.5) == pytest.approx(0.5)
    assert g.cost_per_ms(0.375) == pytest.approx(0.6 / 1.0)
    assert g.cost_per_ms(0.25) > 100 and g.cost_per_ms(0.01) > 100  # no measured saving: pruned last
    h = GroupSensitivity("h", 100, [Point(0.5, 50, 0, 9.0, 2.0, 0.0, 1.0)])
    assert h.cost_per_ms(0.01) == pytest.approx(0.5)  # below the first point: cost and saving from zero


def test_analysis_files_are_checked(tmp_path):
    with pytest.raises(EdgepruneError, match="no such file; `edgeprune analyze` writes"):
        Analysis.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\x00\xff{")
    with pytest.raises(EdgepruneError, match="bad.json: not an analysis.json"):
        Analysis.load(bad)
    bad.write_text('{"version": 7}')
    with pytest.raises(EdgepruneError, match="`version` 7 is not 1"):
        Analysis.load(bad)
    bad.write_text('{"version": 1, "groups": [{"name": "x"}]}')
    with pytest.raises(EdgepruneError, match="missing or malformed"):
        Analysis.load(bad)
    a = _analysis({"model.0.conv": 0.0})
    with pytest.raises(
        EdgepruneError, match="measured on onnxruntime fp32 at 64 px, the search runs openvino"
    ):
        a.check_for(resolve_target("cpu-openvino-int8", imgsz=64), ["model.0.conv"], "a.json")
    with pytest.raises(EdgepruneError, match="none of its groups is in this model"):
        a.check_for(TARGET, ["model.1.conv"], "a.json")


def test_search_refuses_an_analysis_of_another_model(tmp_path, tiny_data):
    path = _analysis({"nothing.here": 0.0}).save(tmp_path / "analysis.json")
    r = run_cli(
        "prune", "yolov8n.yaml", "-t", "cpu-ort-fp32", "--imgsz", "64", "--speedup", "2", "--data", str(tiny_data),
        "--sensitivity", str(path), "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert (
        r.returncode == 1
        and "none of its groups is in this model" in r.stderr
        and "Traceback" not in r.stderr
    )


def test_a_search_reads_its_analysis_and_prunes_analysed_groups(tmp_path, tiny_data):
    from edgeprune.api import prune_to_budget

    det = load_model("yolov8n.yaml", nc=6)
    names = [n for n, c in prunable_groups(det, 8) if c >= 64][:3]
    analyze("yolov8n.yaml", TARGET, data=tiny_data, groups=names, out=tmp_path / "a", meter=macs_meter,
            say=lambda _: None)  # fmt: skip
    outcome = prune_to_budget(
        "yolov8n.yaml", TARGET, speedup=1.05, steps=1, data=tiny_data, sensitivity=tmp_path / "a" / "analysis.json",
        meter=macs_meter, out=tmp_path / "s", say=lambda _: None,
    )  # fmt: skip
    assert outcome.report["search"]["config"]["sensitivity"] == str(tmp_path / "a" / "analysis.json")
    before, after = det.channels(), load_model(outcome.checkpoint).channels()
    changed = {n.replace(".conv", "") for n, w in after.items() if w != before[n]}
    assert changed and outcome.counts["macs"] < det.count(64)["macs"]
    # the analysed groups are what lost channels (prune_detector's costs test shows the rest stays)
    analysed = {n.replace(".block.", ".").replace(".cv_a", ".cv1").replace(".cv_b", ".cv1").replace(".conv", "")
                for n in names}  # fmt: skip
    assert any(c in analysed for c in changed)


def test_an_interrupted_analysis_continues_where_it_stopped(tmp_path, tiny_data):
    det = load_model("yolov8n.yaml", nc=6)
    names = [n for n, _ in prunable_groups(det, 8)][:3]
    calls = []

    def dies_on_the_second_group(d, name):
        calls.append(name)
        if name.startswith(names[1]):
            raise KeyboardInterrupt
        return macs_meter(d, name)

    with pytest.raises(KeyboardInterrupt):
        analyze("yolov8n.yaml", TARGET, data=tiny_data, ratios=(0.5,), groups=names, out=tmp_path,
                meter=dies_on_the_second_group, say=lambda _: None)  # fmt: skip
    partial = tmp_path / "analysis" / "partial.json"
    assert [g.name for g in Analysis.load(partial).groups] == names[:1] and not (
        tmp_path / "analysis.json"
    ).exists()
    calls.clear()
    lines = []
    counted = lambda d, name: calls.append(name) or macs_meter(d, name)  # noqa: E731
    analysis = analyze("yolov8n.yaml", TARGET, data=tiny_data, ratios=(0.5,), groups=names, out=tmp_path,
                       meter=counted, say=lines.append)  # fmt: skip
    assert [g.name for g in analysis.groups] == names and "resuming after 1 groups" in lines[0]
    assert not any(c.startswith(names[0]) for c in calls)  # the finished group is not measured again
    assert not partial.exists() and (tmp_path / "analysis.json").is_file()
