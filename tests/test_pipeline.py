"""`edgeprune run RECIPE.yaml` and `edgeprune demo --quick`: the whole flow, tiny."""

import json

import pytest

from conftest import run_cli

pytest.importorskip("ultralytics")

STABLE_KEYS = ("edgeprune_version", "target", "budget", "baseline", "result", "passed", "environment")


def _check_report(path, *, with_metrics: bool):
    report = json.loads(path.read_text())
    for key in STABLE_KEYS:
        assert key in report
    assert report["budget"]["latency_ms"] > 0 and report["budget"]["percentile"] == "p50"
    for block in ("baseline", "result"):
        b = report[block]
        assert b["params"] > 0 and b["macs"] > 0
        assert set(b["latency_ms"]) >= {"p50", "p90", "mean"}
        assert b["artifact"].endswith(".onnx")
        assert b["parity"]["cosine"] > 0.999
        if with_metrics:
            assert 0.0 <= b["metrics"]["map50_95"] <= 1.0
    assert report["result"]["macs"] < 0.7 * report["baseline"]["macs"]
    assert isinstance(report["passed"], bool)
    assert report["environment"]["cpu"] and report["environment"]["runtime"].startswith("onnxruntime")
    return report


def test_run_recipe(tmp_path):
    (tmp_path / "recipe.yaml").write_text(
        "model: yolov8n.yaml\ntarget: cpu-ort-fp32\nimgsz: 64\nthreads: 1\nprune: {ratio: 0.5}\n"
        "profile_rounds: 1\nout: out\n"
    )
    r = run_cli("run", str(tmp_path / "recipe.yaml"))
    assert r.returncode in (0, 3), r.stderr
    report = _check_report(tmp_path / "out" / "report.json", with_metrics=False)
    assert r.returncode == (0 if report["passed"] else 3)
    assert (tmp_path / "out" / "pruned.pt").is_file()


def test_recipe_prune_options_reach_the_pruner(tmp_path):
    from edgeprune.recipe import load_recipe

    (tmp_path / "recipe.yaml").write_text(
        "model: yolo11n.yaml\ntarget: cpu-ort-fp32\nprune: {ratio: 0.3, native: true, keep_heads: true}\n"
    )
    prune = load_recipe(tmp_path / "recipe.yaml").prune
    assert (prune.ratio, prune.native, prune.keep_heads) == (0.3, True, True)


def test_bad_recipe_is_rejected_clearly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: yolov8n.yaml\ntarget: cpu-ort-fp32\nprune: {ratoi: 0.5}\n")
    r = run_cli("run", str(bad))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "prune.ratoi: unknown field; did you mean 'ratio'?" in r.stderr


def test_demo_quick(tmp_path):
    r = run_cli("demo", "--quick", "--out", str(tmp_path / "demo"), timeout=600)
    assert r.returncode in (0, 3), r.stderr[-3000:]
    assert "mAP50-95" in r.stdout and "p50 ms" in r.stdout and "demo wall time" in r.stdout
    report = _check_report(tmp_path / "demo" / "report.json", with_metrics=True)
    assert "of the baseline" in report["budget_rule"] and "mAP kept" in r.stdout
    # the budget is the baseline's latency / the speed-up, stated to the microsecond
    derived = report["baseline"]["latency_ms"]["p50"] / report["demo"]["speedup"]
    assert abs(report["budget"]["latency_ms"] - derived) <= 0.0005 + 1e-9
    # the pruned model came from a budget search: its steps and probes are in the report
    search = report["search"]
    assert search["speedup"] == 2.0 and search["steps"] and search["probes"]
    assert report["result"]["macs"] < report["baseline"]["macs"] and "map_kept" in report
    page = (tmp_path / "demo" / "report.html").read_text()  # the page beside report.json, every section drawn
    for section in ("verdict", "latency-accuracy", "latency-distribution", "layers", "accuracy-breakdown"):
        assert f'id="{section}"' in page, section


def test_portable_baseline_round_trip(tmp_path):
    """The shipped-baseline format (config + fp16 weights) rebuilds the same model, with no pickle code."""
    import torch

    from edgeprune.demo import DemoSettings, load_portable, save_portable
    from edgeprune.models import load_model

    det = load_model("yolov8n.yaml", nc=6)
    det.module.eval()
    path = save_portable(det, DemoSettings(), {"map50_95": 0.5}, tmp_path / "b.pt")
    torch.load(path, weights_only=True)  # loads with the safe unpickler
    twin, blob = load_portable(path)
    twin.module.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = det.inference_module()(x), twin.inference_module()(x)
    assert blob["metrics"]["map50_95"] == 0.5 and twin.nc == 6
    assert torch.allclose(a, b, rtol=1e-2, atol=1e-2)  # fp16 storage


def test_shipped_baseline_matches_demo_data():
    """If a baseline is shipped, it was trained on exactly the data the demo generates."""
    from edgeprune.demo import BASELINE_ASSET, DemoSettings, _data_key, load_portable

    if not BASELINE_ASSET.is_file():
        pytest.skip("no shipped baseline in this checkout")
    _, blob = load_portable(BASELINE_ASSET)
    assert blob["data"] == _data_key(DemoSettings())
    assert blob["metrics"]["map50_95"] > 0.3


def test_run_recipe_int8_calibrates_both_models(tmp_path, tiny_data):
    (tmp_path / "recipe.yaml").write_text(
        f"model: yolov8n.yaml\ntarget: cpu-ort-int8\nimgsz: 64\nthreads: 1\ncalib: {tiny_data}\n"
        "prune: {ratio: 0.5}\nprofile_rounds: 1\nout: out\n"
    )
    r = run_cli("run", str(tmp_path / "recipe.yaml"))
    assert r.returncode in (0, 3), r.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["target"] == "cpu-ort-int8" and report["result"]["artifact"].endswith(".onnx")
    import onnx

    for name in ("baseline", "pruned"):
        ops = {n.op_type for n in onnx.load(str(tmp_path / "out" / f"{name}.onnx")).graph.node}
        assert "QuantizeLinear" in ops  # both sides of the speed-up are the INT8 artifacts the target runs


@pytest.mark.slow  # a real INT8 budget search, calibrating every probe: 36 s on a quiet 2-core VM
def test_run_recipe_searches_an_int8_budget_and_holds_int8_to_a_measured_drop(tmp_path, tiny_data):
    """The composed flow from one recipe: a budget search measured on the INT8 artifact, then the
    pruned model's INT8 held within ``export.max_drop``, with the deployment's two numbers (tiny
    and untrained here: the plumbing; benchmarks/ has the numbers)."""
    from edgeprune.resources import data_dir

    shipped = (data_dir("targets") / "cpu-ort-int8.yaml").read_text()
    fast = "profiling: {warmup: 1, warmup_s: 0, iterations: 5, min_time_s: 0}\n"
    (tmp_path / "int8.yaml").write_text(shipped.split("profiling:")[0] + fast)
    (tmp_path / "recipe.yaml").write_text(
        f"model: yolov8n.yaml\ntarget: int8.yaml\nimgsz: 64\nthreads: 1\ndata: {tiny_data}\n"
        "search: {speedup: 1.3, steps: 1}\nexport: {max_drop: 1.0}\nprofile_rounds: 1\nout: out\n"
    )
    r = run_cli("run", str(tmp_path / "recipe.yaml"))
    assert r.returncode in (0, 3), r.stdout[-3000:] + r.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    summary = report["int8_vs_fp32_baseline"]
    assert 0 < summary["size_fraction"] < 0.5  # INT8 and pruned against the FP32 baseline
    control = summary["accuracy_control"]
    assert control["max_drop_points"] == 1.0 and control["steps"][0]["float_units"] == []
    assert summary["int8_pruned_map50_95"] == control["steps"][control["chosen_step"]]["map50_95"]
    assert "search" in report and "INT8 pruned artifact:" in r.stdout and "accuracy control:" in r.stdout
    assert (tmp_path / "out" / "fp32" / "baseline.onnx").is_file()


def test_a_recipe_gives_prune_or_search_and_max_drop_needs_data(tmp_path):
    both = tmp_path / "both.yaml"
    both.write_text("model: yolov8n.yaml\ntarget: cpu-ort-fp32\nprune: {ratio: 0.5}\nsearch: {speedup: 2}\n")
    r = run_cli("run", str(both))
    assert r.returncode == 1 and "give `prune` (a fixed ratio) or `search` (a latency budget)" in r.stderr
    nodata = tmp_path / "nodata.yaml"
    nodata.write_text(
        "model: yolov8n.yaml\ntarget: cpu-ort-int8\nsearch: {speedup: 2}\nexport: {max_drop: 1}\n"
    )
    r = run_cli("run", str(nodata))
    assert (
        r.returncode == 1 and "export: max_drop measures the artifact's mAP50-95: it needs `data`" in r.stderr
    )
    assert "Traceback" not in r.stderr
