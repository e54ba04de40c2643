"""report.html: drawn from a run's JSON files, self-contained, and checked in a real browser."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


LATENCY = {
    "p50": 6.8,
    "p90": 7.1,
    "p99": 7.6,
    "mean": 6.9,
    "std": 0.2,
    "min": 6.5,
    "max": 7.9,
    "cv": 0.03,
    "n": 60,
}


def _search_report(folder: Path) -> Path:
    """A budget search's prune.json as the search writes it: three probes, two steps, the final model."""
    probes = [
        {
            "step": 1,
            "ratio": r,
            "params": 1000,
            "macs": 10**6,
            "predicted_ms": ms,
            "measured_ms": ms,
            "action": "width",
        }
        for r, ms in ((0.2, 9.1), (0.3, 8.2), (0.45, 6.9))
    ]
    steps = [
        {"step": k, "goal_ms": 8.0, "ratio": r, "params": 900, "macs": 9 * 10**5, "predicted_ms": ms, "measured_ms": ms,
         "checkpoint": "x.pt", "metrics": {"map50_95": m}}
        for k, r, ms, m in ((1, 0.3, 8.2, 0.61), (2, 0.45, 6.9, 0.58))
    ]  # fmt: skip
    layers = [
        {"name": "model.0.conv", "before": 16, "after": 8, "macs_before": 400, "macs_after": 200},
        {"name": "model.1.conv", "before": 32, "after": 32, "macs_before": 600, "macs_after": 300},
    ]
    hist = {"edges_ms": [6.0, 6.5, 7.0, 7.5], "counts": [3, 10, 2]}
    report = {
        "edgeprune_version": "0", "target": "t", "budget": {"latency_ms": 7.0, "percentile": "p50", "scope": "engine"},
        "baseline": {"params": 2000, "macs": 2 * 10**6, "latency_ms": None, "measured_ms": 10.0, "metrics": {"map50_95": 0.65}},
        "result": {"params": 900, "macs": 9 * 10**5, "latency_ms": LATENCY, "latency_histogram": hist,
                   "metrics": {"map50_95": 0.59}},
        "passed": True, "verdict": {"passed": True, "percentile": "p50", "latency_ms": 6.8, "budget_ms": 7.0,
                                    "margin_ms": 0.2},
        "environment": {"cpu": "test cpu", "threads": 1},
        "search": {"probes": probes, "steps": steps, "layers": layers},
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prune.json").write_text(json.dumps(report))
    return folder / "prune.json"


def test_a_search_report_shows_every_probe_and_step_on_the_latency_accuracy_plot(tmp_path):
    from edgeprune.report.html import load_run, render

    page = render([load_run(_search_report(tmp_path / "run"))])
    plot = page.split('id="latency-accuracy"')[1].split("</section>")[0]
    assert (
        plot.count("<svg") == 1 and "probes (3; timed, not evaluated)" in plot
    )  # the legend, as an SVG comment
    rows = [r for r in plot.split("<tr>")[2:]]
    kinds = [r.split("<td>")[2].split("</td>")[0] for r in rows]
    assert kinds == ["baseline", "probe", "probe", "probe", "step", "step", "final"]
    assert "PASS" in page and "1 of 2 convolution and linear layers changed width" in page
    assert 'id="latency-distribution"' in page
    assert re.findall(r'(?:src|href)="([^"#][^"]*)"', page) == [] and "<link" not in page  # nothing to fetch


def test_pareto_front_keeps_only_points_nothing_beats():
    from edgeprune.report.figures import Point, pareto

    pts = [
        Point("a", 5, 0.5, "step"),
        Point("b", 6, 0.4, "step"),
        Point("c", 8, 0.6, "final"),
        Point("p", 4, None, "probe"),
    ]
    assert [p.label for p in pareto(pts)] == ["a", "c"]  # b is slower and worse than a; a probe has no mAP


def test_report_command_compares_runs_and_refuses_what_is_not_a_report(tmp_path):
    first, second = _search_report(tmp_path / "one"), _search_report(tmp_path / "two")
    r = run_cli("report", str(first.parent), str(second), "--out", str(tmp_path / "cmp.html"))
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "cmp.html").read_text()
    assert 'id="comparison"' in page and ">one<" in page and ">two<" in page
    (tmp_path / "bad.json").write_text("{not json")
    r = run_cli("report", str(tmp_path / "bad.json"))
    assert r.returncode == 1 and "bad.json: not a JSON report" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("report", str(tmp_path / "nowhere"))
    assert r.returncode == 1 and "no such file or folder" in r.stderr
    (tmp_path / "empty").mkdir()
    r = run_cli("report", str(tmp_path / "empty"))
    assert r.returncode == 1 and "no report of edgeprune here" in r.stderr
    assert not (tmp_path / "empty" / "report.html").exists()


@pytest.fixture(scope="module")
def pruned_run(demo_trained, tmp_path_factory):
    """The demo's trained YOLOv8n pruned 30% with accuracy measured, then profiled: what a user's
    `prune --data` and `profile --json` leave in one folder."""
    checkpoint, data = demo_trained
    out = tmp_path_factory.mktemp("pruned-run")
    target = out / "t.yaml"
    target.write_text(
        "name: t\ndescription: html test\ndevice: {kind: x86-cpu, name: box}\nruntime: onnxruntime\n"
        "precision: fp32\nimgsz: 160\nthreads: 1\nround_to: 8\nbudget: {latency_ms: 1000, percentile: p50}\n"
        "profiling: {warmup: 2, warmup_s: 0, iterations: 30, min_time_s: 0}\n"
    )
    r = run_cli(
        "prune", str(checkpoint), "-t", str(target), "--ratio", "0.3", "--data", str(data), "--out", str(out)
    )
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("export", str(out / "pruned.pt"), "-t", str(target), "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("profile", str(out / "pruned.onnx"), "-t", str(target), "--json", str(out / "profile.json"))
    assert r.returncode in (0, 3), r.stderr[-2000:]
    return out


def test_prune_with_data_writes_the_page_with_accuracy_by_class_and_size(pruned_run):
    page = (pruned_run / "report.html").read_text()
    for section in ("verdict", "latency-accuracy", "layers", "accuracy-breakdown"):
        assert f'id="{section}"' in page, section
    report = json.loads((pruned_run / "prune.json").read_text())
    per_class = report["result"]["metrics"]["per_class"]
    assert len(per_class) == 6 and set(report["baseline"]["metrics"]["by_size"]) == {
        "small",
        "medium",
        "large",
    }
    assert all(layer["macs_before"] > 0 for layer in report["pruning"]["layers"])
    for c in per_class:  # every class is in the page's table
        assert f"<td>{c['class']}</td>" in page


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
def test_the_page_opens_offline_in_chromium_with_no_errors_requests_or_empty_figures(pruned_run, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    page_file = pruned_run / "report.html"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors, requests = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        sizes = [f.bounding_box() for f in page.query_selector_all("figure svg")]
        page.screenshot(path=str(tmp_path / "shot.png"), full_page=True)
        browser.close()
    assert errors == [] and requests == [page_file.as_uri()]
    assert len(sizes) >= 4 and all(b and b["width"] > 100 and b["height"] > 100 for b in sizes), sizes
    assert (tmp_path / "shot.png").stat().st_size > 10_000


def test_names_from_data_are_escaped_and_a_foreign_analysis_json_is_ignored(tmp_path):
    from edgeprune.report.html import load_run, render

    path = _search_report(tmp_path / "run")
    report = json.loads(path.read_text())
    report["target"] = "<b>t</b>"
    shady = {"class": "<script>alert(1)</script>", "id": 0, "instances": 3, "map50_95": 0.5, "map50": 0.6}
    report["baseline"]["metrics"]["per_class"] = [shady]
    report["result"]["metrics"]["per_class"] = [{**shady, "map50_95": 0.4}]
    path.write_text(json.dumps(report))
    (path.parent / "analysis.json").write_text("[1, 2]")  # not edgeprune's
    page = render([load_run(path)])
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>t</b>" not in page and 'id="sensitivity"' not in page
