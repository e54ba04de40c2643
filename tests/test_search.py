"""Latency-budget search: measured latency drives the ratio; resumable; impossible budgets end in exit 3."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ultralytics")

from edgeprune.api import resolve_target  # noqa: E402
from edgeprune.errors import EdgepruneError, OptionError  # noqa: E402
from edgeprune.models import load_model  # noqa: E402
from edgeprune.profiling.meters import CallableMeter  # noqa: E402
from edgeprune.pruning.search import (  # noqa: E402
    BudgetSearcher,
    Goals,
    LatencyModel,
    SearchConfig,
    auto_margin,
)

from conftest import run_cli  # noqa: E402

FAST = {"warmup": 1, "warmup_s": 0, "iterations": 5, "min_time_s": 0}
TARGET = resolve_target("cpu-ort-fp32", imgsz=64).with_overrides(round_to=8, threads=1, profiling=FAST)


class FakeMeter(CallableMeter):
    """A meter whose baseline timings are the test's list, as an ArtifactMeter's are its rounds'."""

    retimes_reference = True

    def __init__(self, fn, timings, alone=None):
        super().__init__(fn, TARGET, alone=alone)
        self.reference_timings = timings

    def _record(self, name, ms, *, reference):
        self.measured[name] = ms
        return ms


def searched(det, config, fn, out, *, resume=False, meter=None, **kw):
    """The search's first two stages (baseline, steps) with ``fn`` as the meter; the searcher."""
    s = BudgetSearcher(det, config, meter or CallableMeter(fn, TARGET), target=TARGET, out=out, **kw)
    s.begin(resume)
    s.run_steps()
    return s


def fake_meter(calls):
    """Latency linear in MACs plus a fixed cost, as a runtime roughly behaves."""

    def meter(det, name):
        calls.append(name)
        return 10.0 + det.count(64)["macs"] / 1e6

    return meter


def test_latency_model_fits_measured_points():
    m = LatencyModel()
    m.add(100.0, 10.0)
    assert m.predict(50.0) == pytest.approx(5.0)  # one point: proportional
    m.add(50.0, 6.0)
    m.add(25.0, 4.0)
    assert m.predict(75.0) == pytest.approx(8.0, rel=0.05)
    assert m.predict(0.0) == pytest.approx(2.0, abs=0.3)  # the fixed cost a FLOPs proxy misses


def test_latency_model_does_not_extrapolate_timing_noise():
    m = LatencyModel()
    for point in [(100.0, 10.0), (50.0, 6.0), (49.5, 6.4)]:  # two probes of nearly one size, noisy
        m.add(*point)
    # the close pair is averaged; the line runs to the far point instead of through the noise
    assert m.predict(20.0) == pytest.approx(6.2 - 29.75 * 3.8 / 50.25, rel=0.01)


def test_latency_model_does_not_extend_a_flat_noisy_segment():
    # the points run 6 of benchmarks/budget_search.py had measured (GMACs, ms) before its blunder
    m = LatencyModel()
    for gmacs, ms in [(0.892, 18.05), (0.715, 12.64), (0.777, 13.71), (0.8, 14.17), (0.662, 11.81),
                      (0.621, 11.77), (0.535, 9.56), (0.458, 9.27)]:  # fmt: skip
        m.add(gmacs * 1e9, ms)
    # the last two points lie on a nearly flat segment (0.29 ms for 0.08 GMACs); extended, it put
    # 0.109 GMACs at 7.96 ms and 0.362 at 8.91, where the search then measured 2.94 and 7.09 ms
    assert m.predict(0.362e9) == pytest.approx(7.09, rel=0.10)
    assert m.predict(0.109e9) == pytest.approx(2.94, rel=0.25)
    assert m.predict(0.109e9) >= 9.27 * 0.109 / 0.458  # never below proportional to the nearest point


def test_latency_model_pools_a_smaller_model_measured_slower():
    m = LatencyModel()
    for point in [(175.0, 11.1), (120.0, 8.4), (100.0, 10.1)]:  # 100 ran slower than 120: reversed
        m.add(*point)
    # the reversed pair is one point at its means; no negative slope sends a probe far off
    assert m.predict(110.0) == pytest.approx(9.25)
    assert m.predict(60.0) < m.predict(100.0) < m.predict(120.0) < m.predict(175.0)


def test_a_probe_slower_than_a_larger_model_is_timed_again_and_the_lower_timing_kept(tmp_path):
    det = load_model("yolov8n.yaml", nc=6)
    base = 10.0 + det.count(64)["macs"] / 1e6
    calls, lines = [], []
    linear = fake_meter(calls)

    def bursty(d, name):  # the first probe of step 1 is hit by a burst of load: 2x its latency
        ms = linear(d, name)
        return ms * 2 if len(calls) == 2 else ms

    s = searched(det, SearchConfig(budget_ms=base * 0.55, steps=2), bursty, tmp_path, say=lines.append)
    first = s.probes[0]
    assert calls[1:3] == [calls[1], calls[1] + "-again"]  # the same candidate, timed once more
    assert first.first_ms == pytest.approx(2 * first.measured_ms) and not first.reversed
    assert first.measured_ms == pytest.approx(10.0 + first.macs / 1e6)
    assert any("slower than" in line and "timing it again" in line for line in lines)
    assert all(p.first_ms is None for p in s.probes[1:])  # monotone probes are timed once
    assert s.steps[-1].measured_ms <= base * 0.55


def test_a_runtime_slower_with_less_work_is_pooled_and_warned_about(tmp_path):
    from edgeprune.pruning.records import reversed_probes_warning

    det = load_model("yolov8n.yaml", nc=6)
    base_macs = det.count(64)["macs"]
    lines = []

    def reversed_meter(d, name):  # every model under 80% of the MACs pays a fixed 40% penalty
        macs = d.count(64)["macs"]
        return (10.0 + macs / 1e6) * (1.4 if macs < 0.8 * base_macs else 1.0)

    base = 10.0 + base_macs / 1e6
    config = SearchConfig(budget_ms=base * 0.8, steps=1, extra_steps=1)
    s = searched(det, config, reversed_meter, tmp_path, say=lines.append)
    bad = [p for p in s.probes if p.reversed]
    assert bad and all(p.first_ms is not None for p in bad)
    assert any("still slower than the larger model" in line for line in lines)
    warning = reversed_probes_warning(s.probes)
    assert warning and f"{len(bad)} probe(s) ran slower than a larger model even when timed twice" in warning
    assert reversed_probes_warning([p for p in s.probes if not p.reversed]) is None


def test_goals_walk_from_the_baseline_to_the_budget_under_the_margin():
    timings = [10.0]
    fixed = Goals(SearchConfig(budget_ms=6.0, steps=3, margin=0.05), lambda: timings)
    assert fixed.final() == pytest.approx(5.7)
    steps = [fixed.step(k) for k in (1, 2, 3, 4)]  # equal parts, then the final goal for extra steps
    assert steps == pytest.approx([10 - 4.3 / 3, 10 - 8.6 / 3, 5.7, 5.7])
    timings += [12.0, 12.0]  # the machine slowed: a speed-up budget follows it, a budget in ms does not
    ratio = Goals(SearchConfig(speedup=2.0, steps=1, margin=0.0), lambda: timings)
    assert ratio.budget_ms() == pytest.approx(6.0) and fixed.budget_ms() == 6.0


def test_goals_correct_only_a_check_that_misses_the_goal_and_runs_slower():
    goals = Goals(SearchConfig(budget_ms=10.0, margin=0.0, tolerance=0.02), lambda: [20.0])
    assert not goals.correct(9.0, 10.1)  # within the tolerance
    assert not goals.correct(11.0, 10.5)  # misses, but ran faster than the search said
    assert goals.final() == 10.0
    assert goals.correct(9.0, 12.0) and goals.final() == pytest.approx(10 * 9 / 12)
    assert goals.margin_record() == {"setting": 0.0, "fraction": 0.0}
    auto = Goals(SearchConfig(budget_ms=10.0, margin="auto"), lambda: [10.0] * 5 + [12.0] * 5)
    assert auto.margin() == pytest.approx(1 - 11 / 12)
    assert auto.margin_record()["reference_timings"] == 10


def test_search_reaches_the_budget_by_measurement(tmp_path):
    det = load_model("yolov8n.yaml", nc=6)
    calls = []
    base = 10.0 + det.count(64)["macs"] / 1e6
    config = SearchConfig(budget_ms=base * 0.55, steps=2)
    s = searched(det, config, fake_meter(calls), tmp_path, say=lambda _: None)
    pruned, steps, probes, baseline = s.current, s.steps, s.probes, s.baseline
    assert calls[0] == "baseline" and baseline["measured_ms"] == pytest.approx(base)
    assert steps and steps[-1].measured_ms <= config.budget_ms
    assert [s.measured_ms for s in steps] == sorted((s.measured_ms for s in steps), reverse=True)
    assert 10.0 + pruned.count(64)["macs"] / 1e6 == pytest.approx(steps[-1].measured_ms)
    assert det.count(64) == load_model("yolov8n.yaml", nc=6).count(64)  # the input is left alone
    for p in probes:  # predictions were made before the measurement and are close once fitted
        assert p.predicted_ms > 0
    assert abs(probes[-1].predicted_ms - probes[-1].measured_ms) / probes[-1].measured_ms < 0.05
    before = det.channels()
    for s in steps:
        after = load_model(s.checkpoint).channels()
        changed = {name: w for name, w in after.items() if w != before[name]}
        assert changed and all(w % 8 == 0 for w in changed.values())  # widths keep the target's alignment
        assert len(set(1 - w / before[n] for n, w in changed.items())) > 1  # per-layer widths, not uniform
    state = json.loads((tmp_path / "search" / "state.json").read_text())
    assert len(state["steps"]) == len(steps) and state["points"][0][1] == pytest.approx(base)


def test_search_resumes_after_an_interruption(tmp_path):
    det = load_model("yolov8n.yaml", nc=6)
    base = 10.0 + det.count(64)["macs"] / 1e6
    config = SearchConfig(budget_ms=base * 0.5, steps=3)
    calls = []
    meter = fake_meter(calls)

    def interrupted(d, name):
        if name.startswith("step2"):
            raise KeyboardInterrupt
        return meter(d, name)

    with pytest.raises(KeyboardInterrupt):
        searched(det, config, interrupted, tmp_path, say=lambda _: None)
    first = json.loads((tmp_path / "search" / "state.json").read_text())["steps"]
    assert [s["step"] for s in first] == [1]
    lines = []
    calls.clear()
    steps = searched(det, config, meter, tmp_path, resume=True, say=lines.append).steps
    # the baseline is timed again first, as the meter's reference, and not trained or pruned again
    assert (
        calls[0] == "baseline"
        and calls.count("baseline") == 1
        and lines[0].startswith("resuming after step 1")
    )
    assert steps[0].checkpoint == first[0]["checkpoint"] and steps[-1].measured_ms <= config.budget_ms
    with pytest.raises(EdgepruneError, match="other settings .*steps"):
        searched(det, SearchConfig(budget_ms=config.budget_ms, steps=5), meter, tmp_path, resume=True)


def test_a_search_killed_while_fine_tuning_a_step_resumes_that_fine_tuning_not_the_step(tmp_path):
    det = load_model("yolov8n.yaml", nc=6)
    base = 10.0 + det.count(64)["macs"] / 1e6
    config = SearchConfig(budget_ms=base * 0.5, steps=3, step_epochs=2, final_epochs=3)
    calls, tuned = [], []

    def finetune(d, epochs, name, resume=False):
        tuned.append((name, epochs, resume, d.count(64)["params"]))
        if name == "step2" and not resume:
            raise KeyboardInterrupt  # killed during step 2's fine-tuning

    with pytest.raises(KeyboardInterrupt):
        searched(det, config, fake_meter(calls), tmp_path, finetune=finetune, say=lambda _: None)
    state = json.loads((tmp_path / "search" / "state.json").read_text())
    assert [s["step"] for s in state["steps"]] == [1] and state["pending"]["record"]["step"] == 2
    kept_params = tuned[-1][3]
    calls.clear()
    tuned.clear()
    lines = []
    s = searched(det, config, fake_meter(calls), tmp_path, resume=True, finetune=finetune, say=lines.append)
    # step 2 was not probed again: its kept model's fine-tuning was resumed, then step 3 followed
    assert lines[0].startswith("resuming in step 2") and not any(c.startswith("step2") for c in calls)
    assert tuned[0] == ("step2", 2, True, kept_params)
    assert [r.step for r in s.steps] == [1, 2, 3] and tuned[1][0] == "step3" and not tuned[1][2]
    assert not (tmp_path / "search" / "step2-untuned.pt").exists()
    final = json.loads((tmp_path / "search" / "state.json").read_text())
    assert final["pending"] is None and [r["step"] for r in final["steps"]] == [1, 2, 3]


def test_a_search_killed_while_fine_tuning_the_kept_model_resumes_that_fine_tuning_once(
    tmp_path, monkeypatch
):
    det = load_model("yolov8n.yaml", nc=6)
    base = 10.0 + det.count(64)["macs"] / 1e6
    config = SearchConfig(budget_ms=base * 0.5, steps=3, step_epochs=2, final_epochs=3)
    probe = BudgetSearcher._probe  # after step 1 nothing is left to remove: step 1's model is kept
    monkeypatch.setattr(BudgetSearcher, "_probe", lambda self, k: probe(self, k) if k == 1 else None)
    tuned = []

    def finetune(d, epochs, name, resume=False):
        tuned.append((name, epochs, resume))
        if name == "step1-final" and not resume:
            raise KeyboardInterrupt  # killed during the kept model's final fine-tuning

    with pytest.raises(KeyboardInterrupt):
        searched(det, config, fake_meter([]), tmp_path, finetune=finetune, say=lambda _: None)
    assert tuned == [("step1", 2, False), ("step1-final", 3, False)]
    tuned.clear()
    lines = []
    searched(det, config, fake_meter([]), tmp_path, resume=True, finetune=finetune, say=lines.append)
    # the final epochs continue from the last finished one, on the model kept
    assert tuned == [("step1-final", 3, True)] and any("no channel left" in line for line in lines)
    assert json.loads((tmp_path / "search" / "state.json").read_text())["final_tuned"] is True
    tuned.clear()  # killed again after that (say, while exporting): the kept model is not tuned twice
    searched(det, config, fake_meter([]), tmp_path, resume=True, finetune=finetune, say=lambda _: None)
    assert tuned == []


def test_impossible_budget_exits_3_keeping_the_smallest_model(tmp_path):
    target = tmp_path / "t.yaml"
    target.write_text(
        "name: t\ndescription: test\ndevice: {kind: x86-cpu, name: box}\nruntime: onnxruntime\n"
        "precision: fp32\nimgsz: 64\nthreads: 1\nround_to: 8\nbudget: {latency_ms: 0.0001, percentile: p50}\n"
        "profiling: {warmup: 1, warmup_s: 0, iterations: 5, min_time_s: 0}\n"
    )
    out = tmp_path / "out"
    r = run_cli(
        "prune", "yolov8n.yaml", "-t", str(target), "--steps", "1", "--margin", "auto", "--out", str(out),
        timeout=600,
    )  # fmt: skip
    assert r.returncode == 3, r.stderr[-2000:]
    assert "budget not met: the smallest model reached runs in" in r.stdout
    assert (out / "pruned.pt").is_file() and (out / "pruned.onnx").is_file()
    report = json.loads((out / "prune.json").read_text())
    assert report["passed"] is False and report["search"]["steps"]
    assert report["result"]["params"] < report["baseline"]["params"]
    assert report["budget"]["latency_ms"] == 0.0001
    # the baseline is timed alone again at the end: the machine's drift is told apart from the model's error
    search = report["search"]
    assert search["reference_ms_final"] > 0 and search["drift"] == pytest.approx(
        search["reference_ms_final"] / search["reference_ms"]
    )
    assert "the baseline now runs" in r.stdout and "prediction error" in r.stdout
    # the prediction is judged against the final artifact timed in rounds against the baseline
    in_frame = search["measured_ms_final_in_search_frame"]
    assert search["prediction_error"] == pytest.approx(abs(search["predicted_ms"] - in_frame) / in_frame)
    margin = search["margin"]  # read from the baseline's timings during the search
    assert (
        margin["setting"] == "auto" and margin["reference_timings"] >= 6 and 0.03 <= margin["fraction"] <= 0.4
    )
    assert margin["reference_p90_ms"] >= margin["reference_p50_ms"] > 0 and "margin auto: aimed" in r.stdout


def test_margin_must_be_a_fraction_or_auto():
    r = run_cli("prune", "yolov8n.yaml", "-t", "cpu-ort-fp32", "--margin", "lots")
    assert r.returncode == 2 and "a fraction such as 0.05, or 'auto'; got 'lots'" in r.stderr
    with pytest.raises(OptionError, match="`margin` must be in"):
        SearchConfig(budget_ms=5, margin=0.7)
    from edgeprune.api import prune_to_budget

    with pytest.raises(OptionError, match="with `host` .* give a fraction"):  # before any work
        prune_to_budget("yolov8n.yaml", "cpu-ort-fp32", margin="auto", host="jetson", say=lambda _: None)
    r = run_cli("prune", "yolov8n.yaml", "-t", "cpu-ort-fp32", "--margin", "0.7")  # the CLI names the flag
    assert r.returncode == 1 and "error: --margin must be in [0, 0.5) or 'auto', got 0.7" in r.stderr


def test_auto_margin_aims_as_far_under_the_budget_as_the_baseline_ran_slow(tmp_path):
    assert auto_margin([10.0] * 4) == 0.03  # too few timings to say anything of the spread
    assert auto_margin([10.0] * 5 + [12.0] * 5) == pytest.approx(1 - 11.0 / 12.0)  # median 11, p90 12
    assert auto_margin([10.0] * 10) == 0.03 and auto_margin([1.0] * 5 + [100.0] * 5) == 0.4  # within limits
    det = load_model("yolov8n.yaml", nc=6)
    base = 10.0 + det.count(64)["macs"] / 1e6
    timings: list[float] = []
    lines: list[str] = []

    def meter(d, name):  # the baseline's timings so far: its latency, and 25% slower one time in four
        timings.extend([base, base, base, base * 1.25])
        return 10.0 + d.count(64)["macs"] / 1e6

    config = SearchConfig(budget_ms=base * 0.6, steps=2, margin="auto")
    steps = searched(det, config, None, tmp_path, meter=FakeMeter(meter, timings), say=lines.append).steps
    fraction = auto_margin(timings)
    assert fraction == pytest.approx(0.2)  # p90 1.25x the median
    assert steps[-1].measured_ms <= config.budget_ms * (1 - fraction) * (1 + config.tolerance)
    # met also when the machine runs 25% slower, as one timing of the baseline in four did
    assert steps[-1].measured_ms * 1.25 <= config.budget_ms * (1 + config.tolerance)
    assert any("under the budget: the baseline's timings so far ran up to 1.25x" in line for line in lines)


def test_speedup_budget_follows_the_baseline_when_the_machine_slows(tmp_path):
    det = load_model("yolov8n.yaml", nc=6)
    base = 10.0 + det.count(64)["macs"] / 1e6

    def run(config, out):
        timings: list[float] = []

        def meter(d, name):  # as ArtifactMeter: the baseline timed again in each of 6 rounds, and
            # the candidate reported as the median of those timings x its true ratio to the baseline
            slow = 1.0 if not timings else 1.3  # the machine runs 30% slower after the first timing
            timings.extend([base * slow] * (1 if not timings else 6))
            return sorted(timings)[len(timings) // 2] * (10.0 + d.count(64)["macs"] / 1e6) / base

        pruned = searched(det, config, None, out, meter=FakeMeter(meter, timings), say=lambda _: None).current
        return (10.0 + pruned.count(64)["macs"] / 1e6) / base  # the true ratio, free of the machine

    by_speedup = run(SearchConfig(speedup=2.0, steps=1), tmp_path / "speedup")
    by_ms = run(SearchConfig(budget_ms=base / 2, steps=1), tmp_path / "ms")
    tol = SearchConfig(budget_ms=1).tolerance
    # 2x faster than the baseline as it runs now: neither missed, nor overshot for the machine's sake
    assert 0.5 * 0.97 * (1 - 3 * tol) <= by_speedup <= 0.5 * (1 + tol)
    # a budget in ms is a fixed number: the slower machine makes the search prune further
    assert by_ms <= 0.5 / 1.3 * (1 + tol) < by_speedup
    with pytest.raises(OptionError, match="one of the two"):
        SearchConfig(budget_ms=5, speedup=2)
    with pytest.raises(OptionError, match="one of the two"):
        SearchConfig()
    with pytest.raises(OptionError, match="`speedup` must be > 1"):
        SearchConfig(speedup=0.5)


def test_speedup_is_judged_against_the_baseline_timed_alongside_the_final_check(tmp_path):
    from edgeprune.api import prune_to_budget, resolve_target

    t = resolve_target("cpu-ort-fp32", imgsz=64).with_overrides(
        threads=1, profiling={"warmup": 1, "warmup_s": 0, "iterations": 5, "min_time_s": 0}
    )
    lines: list[str] = []
    outcome = prune_to_budget("yolov8n.yaml", t, speedup=1.5, steps=1, out=tmp_path, say=lines.append)
    report, search = outcome.report, outcome.report["search"]
    assert search["speedup"] == 1.5 and search["config"]["budget_ms"] is None
    assert search["round_to"] == 16  # cpu-ort-fp32: MLAS's NCHWc block on AVX-512 (benchmarks/alignment.py)
    # in the search, the baseline's median timing / 1.5; at the end, its timing alongside the check / 1.5
    assert search["budget_ms_in_search"] == pytest.approx(search["reference_ms"] / 1.5)
    assert report["budget"]["latency_ms"] == pytest.approx(search["reference_ms_final"] / 1.5)
    assert outcome.passed == (search["measured_ms_final"] <= report["budget"]["latency_ms"])
    assert "(1.5x faster)" in lines[0] and "speed-up 1.5x: the budget is the baseline's" in outcome.message
    assert report["result"]["macs"] < report["baseline"]["macs"]
    assert load_model(outcome.checkpoint).count(64)["macs"] == report["result"]["macs"]
    # the keys the search wrote before it was an object (benchmarks/results/budget_search.json) stay,
    # and the layers' channels and MACs before -> after (for report.html)
    assert set(search) == PRUNE_JSON_SEARCH_KEYS | {"layers"} and search["layers"]
    # ... plus what each step and probe was (width, depth) and what it removed or scored
    assert set(search["steps"][0]) == STEP_KEYS | {"action", "removed"}
    assert set(search["probes"][0]) == PROBE_KEYS | {"action", "proxy_loss", "first_ms", "reversed"}
    assert set(search["config"]) == set(SearchConfig.field_names())
    assert {"edgeprune_version", "target", "budget", "baseline", "result", "passed", "verdict", "environment",
            "search", "message"} <= set(report)  # fmt: skip


PRUNE_JSON_SEARCH_KEYS = {
    "budget_ms_in_search", "config", "drift", "latency_points", "margin", "measured_ms_checked", "measured_ms_final",
    "measured_ms_final_in_search_frame", "measured_ms_in_search", "predicted_ms", "prediction_error",
    "prediction_error_uncorrected", "probes", "reference_ms", "reference_ms_final", "round_to", "speedup", "steps",
}  # fmt: skip
STEP_KEYS = {"checked_ms", "checkpoint", "goal_ms", "macs", "measured_ms", "metrics", "params", "predicted_ms", "ratio",
             "seconds", "step"}  # fmt: skip
PROBE_KEYS = {"macs", "measured_ms", "params", "predicted_ms", "ratio", "step"}


def test_ratio_and_budget_exclude_each_other(tmp_path):
    r = run_cli("prune", "yolov8n.yaml", "-t", "cpu-ort-fp32", "--ratio", "0.3", "--budget-ms", "5")
    assert r.returncode == 1 and "--ratio excludes --budget-ms and --speedup" in r.stderr
    r = run_cli("prune", "yolov8n.yaml", "-t", "cpu-ort-fp32", "--budget-ms", "5", "--speedup", "2")
    assert r.returncode == 1 and "--budget-ms and --speedup exclude each other" in r.stderr
    r = run_cli("prune", "yolov8n.yaml", "-t", "cpu-ort-fp32", "--ratio", "0.3", "--actions", "width,depth")
    assert r.returncode == 1 and "--actions chooses what a budget search removes" in r.stderr
    r = run_cli("prune", "yolov8n.yaml", "-t", "cpu-ort-fp32", "--speedup", "2", "--actions", "depth,heads")
    assert r.returncode == 1 and "--actions must name each of width, depth" in r.stderr


def test_budget_search_fine_tunes_with_distillation_between_steps(tmp_path, tiny_data):
    from edgeprune.api import prune_to_budget, resolve_target

    det = load_model("yolov8n.yaml", nc=6)
    base = 10.0 + det.count(64)["macs"] / 1e6
    t = resolve_target("cpu-ort-fp32", imgsz=64).with_overrides(
        threads=1, profiling={"warmup": 1, "warmup_s": 0, "iterations": 5, "min_time_s": 0}
    )
    lines = []
    outcome = prune_to_budget(
        "yolov8n.yaml", t, budget_ms=base * 0.6, data=tiny_data, epochs=1, step_epochs=1, steps=2, distill=True,
        batch=8, out=tmp_path, meter=fake_meter([]), say=lines.append,
    )  # fmt: skip
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["step1", "step2"]
    for run in runs:
        header = (tmp_path / "runs" / run / "results.csv").read_text().splitlines()[0]
        assert "dis_loss" in header  # the unpruned model taught the pruned one
    assert any("with output distillation" in line for line in lines)  # distill=True: the default mode
    search = outcome.report["search"]
    assert [s["step"] for s in search["steps"]] == [1, 2] and all(s["metrics"] for s in search["steps"])
    assert (
        outcome.report["baseline"]["metrics"] and outcome.checkpoint.is_file() and outcome.artifact.is_file()
    )
    assert outcome.report["result"]["params"] < outcome.report["baseline"]["params"]


def test_artifact_meter_ratio_is_robust_to_a_burst_on_one_side(tmp_path, monkeypatch):
    """Candidates are timed in rounds against the baseline; the median of per-round ratios ignores a
    round that a burst of load hit on one side only, and the baseline's latency is the median of all
    its timings, so one slow start does not scale every later result."""
    from edgeprune.profiling import timing as profiling
    from edgeprune.profiling.meters import ArtifactMeter, reference_ms

    meter = ArtifactMeter(TARGET, tmp_path, rounds=6)
    det = load_model("yolov8n.yaml", nc=6)
    base_ms = meter.measure(det, "baseline")
    assert base_ms > 0 and meter.reference_timings == [base_ms]

    ref = [[10.0] * 5, [10.0] * 5, [30.0] * 5, [10.0] * 5, [10.0] * 5, [10.0] * 5]  # a burst in round 3...
    cand = [[5.0] * 5, [5.0] * 5, [5.0] * 5, [5.0] * 5, [5.0] * 5, [20.0] * 5]  # ...and another in round 6
    seen = {}

    def fake_rounds(fns, *, rounds, **kw):
        seen.update(kw, rounds=rounds, names=list(fns))
        return {"reference": ref, "candidate": cand}

    monkeypatch.setattr(profiling, "sample_interleaved", fake_rounds)
    ms = meter.measure(det.clone(), "candidate")
    assert seen["rounds"] == 6 and seen["names"] == ["reference", "candidate"]
    assert (
        seen["warmup_s"] == 0 and seen["min_time_s"] == 0
    )  # the target's warm-up; a quarter of its min time
    assert meter.ratios["candidate"] == pytest.approx(0.5)
    assert reference_ms(meter) == pytest.approx(10.0)  # median of [baseline alone, 10, 10, 30, 10, 10, 10]
    assert ms == pytest.approx(5.0)
    assert not list(tmp_path.glob("candidate.*"))  # candidate artifacts are deleted once timed

    # the check on its own, before the last fine-tuning, is read in the search's frame: the baseline
    # timed in the same check ran 2x slower than the search's reference, so the machine is, not the model
    timed = {"final": [[12.0] * 5, [30.0] * 5, [12.0] * 5], "reference": [[20.0] * 5, [20.0] * 5, [20.0] * 5]}
    monkeypatch.setattr(profiling, "sample_interleaved", lambda fns, *, rounds, **kw: timed)
    check = meter.check(tmp_path / "baseline.onnx")  # a burst in one round of the final artifact...
    assert check.reference_ms == pytest.approx(20.0) and check.ratio == pytest.approx(0.6)  # ...ignored
    assert check.stats.n == 15 and check.in_frame(reference_ms(meter)) == pytest.approx(6.0)
    assert meter.alone(det.clone(), "last") == pytest.approx(6.0)
    assert not list(tmp_path.glob("last.*"))


def test_final_check_disagreeing_with_the_search_is_not_called_the_smallest_model(tmp_path):
    """When the search timed the model within the budget but the final check on its own does not, the
    message says the two timings disagree (a noisy machine), not that pruning reached its limit."""
    from edgeprune.api import prune_to_budget, resolve_target

    t = resolve_target("cpu-ort-fp32", imgsz=64).with_overrides(
        threads=1, profiling={"warmup": 1, "warmup_s": 0, "iterations": 5, "min_time_s": 0}
    )
    outcome = prune_to_budget(
        "yolov8n.yaml", t, budget_ms=1e-4, out=tmp_path, meter=lambda det, name: 1e-5, say=lambda _: None
    )
    assert not outcome.passed
    assert "budget not met on the final check" in outcome.message and "smallest model" not in outcome.message
    assert outcome.report["search"]["measured_ms_in_search"] == pytest.approx(1e-5)


def test_a_last_step_slower_on_its_own_gets_one_more_step_before_the_only_final_fine_tuning(tmp_path):
    """The model that would be the last is timed on its own before it is fine-tuned; when that runs
    slower than the interleaved timing and misses the goal, the goal drops by that factor and one more
    step follows, and the final fine-tuning is spent once, on the model that is kept."""
    det = load_model("yolov8n.yaml", nc=6)
    base = 10.0 + det.count(64)["macs"] / 1e6
    config = SearchConfig(budget_ms=base * 0.6, steps=1, final_epochs=3, step_epochs=1)
    checks, tuned, lines = [], [], []

    def check(d, name):
        checks.append(name)
        return (10.0 + d.count(64)["macs"] / 1e6) * (1.3 if len(checks) == 1 else 1.0)  # slow once

    meter = CallableMeter(fake_meter([]), TARGET, alone=check)
    steps = searched(
        det,
        config,
        None,
        tmp_path,
        meter=meter,
        finetune=lambda d, n, name: tuned.append((name, n)),
        say=lines.append,
    ).steps
    assert checks == ["step1-check", "step2-check"]
    assert any("on its own it runs" in line and "one more step" in line for line in lines)
    assert tuned == [("step1", 1), ("step2", 3)]  # the corrected step got step epochs, the kept one the final
    assert steps[0].checked_ms > config.budget_ms and steps[1].checked_ms <= config.budget_ms
    assert steps[1].measured_ms < steps[0].measured_ms / 1.2  # aimed ~1.3x lower
    state = json.loads((tmp_path / "search" / "state.json").read_text())
    assert state["goal_ms"] < config.budget_ms * (1 - config.margin) / 1.2


def test_an_extra_step_gets_the_step_epochs_and_only_the_kept_model_the_final_ones(tmp_path, monkeypatch):
    """After the planned steps, a model still above the goal is tuned as an intermediate one, since
    another step follows; the final epochs go once, to the model that is kept, even when the extra
    step finds no channel left to remove."""
    import edgeprune.pruning.search as search_mod

    det = load_model("yolov8n.yaml", nc=6)
    base = 10.0 + det.count(64)["macs"] / 1e6
    config = SearchConfig(budget_ms=base * 0.6, steps=1, final_epochs=3, step_epochs=1)

    def meter(d, name):  # step 1's probes all run 5% over the budget: the planned step misses it
        ms = 10.0 + d.count(64)["macs"] / 1e6
        return max(ms, config.budget_ms * 1.05) if name.startswith("step1") else ms

    tuned, lines = [], []
    common = dict(evaluate=lambda d: {"map50_95": len(tuned) / 10}, say=lines.append)
    steps = searched(
        det, config, meter, tmp_path / "extra", finetune=lambda d, n, name: tuned.append((name, n)), **common
    ).steps
    assert tuned == [("step1", 1), ("step2", 3)]
    assert any("above the goal of" in line and "one more step" in line for line in lines)
    assert steps[-1].measured_ms <= config.budget_ms

    original = search_mod.BudgetSearcher._probe
    monkeypatch.setattr(
        search_mod.BudgetSearcher, "_probe", lambda self, k: original(self, k) if k == 1 else None
    )
    tuned.clear()
    steps = searched(
        det, config, meter, tmp_path / "stuck", finetune=lambda d, n, name: tuned.append((name, n)), **common
    ).steps
    assert tuned == [("step1", 1), ("step1-final", 3)]  # the kept model got its final epochs after all
    assert len(steps) == 1 and steps[0].metrics == {"map50_95": 0.2}  # evaluated after them


def test_output_distillation_teaches_the_pruned_model_the_teachers_predictions(tmp_path, tiny_data):
    """``distill="output"``: the pruned student learns the teacher's class scores and box
    distributions (Ultralytics' feature term off); the loss is in the trainer's dis_loss column."""
    import csv

    import torch

    from edgeprune.api import prune_to_budget
    from edgeprune.models.distill import OutputDistillation

    det = load_model("yolov8n.yaml", nc=6)
    base = 10.0 + det.count(64)["macs"] / 1e6
    lines = []
    outcome = prune_to_budget(
        det, TARGET, budget_ms=base * 0.6, data=tiny_data, epochs=1, steps=1, distill="output", batch=8,
        out=tmp_path, meter=fake_meter([]), say=lines.append,
        # ungated: both models are untrained here, so which one leads a batch is a coin toss
        # (tests/test_distillation.py tests the gate with a trained teacher)
        train_overrides={"output_distill": OutputDistillation(gate=False)},
    )  # fmt: skip
    assert any("with output distillation" in line for line in lines)
    with (tmp_path / "runs" / "step1" / "results.csv").open() as f:
        rows = list(csv.DictReader(f, skipinitialspace=True))
    assert float(rows[0]["train/dis_loss"]) > 0  # output terms only: the feature weight is 0
    assert outcome.report["search"]["config"]["distill"] == "output"
    with pytest.raises(OptionError, match="`distill` must be one of feature, output, both"):
        SearchConfig(budget_ms=5, distill="logits")
    # the loss is zero for a student that predicts what the teacher does
    twin = det.clone()
    det.module.train(), twin.module.train()
    x = torch.rand(2, 3, 64, 64)
    cls, box = OutputDistillation().loss(twin.module(x), det.module(x), det.module.model[-1].reg_max)
    assert float(cls) == pytest.approx(0, abs=1e-6) and float(box) == pytest.approx(0, abs=1e-6)


def test_the_kept_model_is_calibrated_like_an_export_and_candidates_for_latency_only(tmp_path, tiny_data):
    """INT8: candidates are calibrated on ``calib_images`` (latency does not depend on them); the
    final artifact gets the recipe's calibration, as ``edgeprune export`` gives it."""
    from edgeprune.api import prune_to_budget, resolve_target

    t = resolve_target("cpu-ort-int8", imgsz=64).with_overrides(threads=1, profiling=FAST)
    det = load_model("yolov8n.yaml", nc=6)
    base = 10.0 + det.count(64)["macs"] / 1e6
    outcome = prune_to_budget(
        det, t, budget_ms=base * 0.7, steps=1, calib=tiny_data, calib_images=4, out=tmp_path, meter=fake_meter([]),
        say=lambda _: None,
    )  # fmt: skip
    assert outcome.export.details["calibration"]["images"] == 16  # every train image, not the candidates' 4


def test_width_and_depth_candidates_are_compared_by_the_accuracy_proxy(tmp_path, tiny_data):
    det = load_model("yolov8n.yaml", nc=6)
    calls = []
    base = 10.0 + det.count(64)["macs"] / 1e6
    config = SearchConfig(budget_ms=base * 0.8, steps=1, actions=("width", "depth"), bn_images=8)
    scored = []

    def proxy(d):
        scored.append(d)
        return float(len(scored))  # the first candidate scores best: it must be the one kept

    s = searched(det, config, fake_meter(calls), tmp_path, data=tiny_data, proxy=proxy, say=lambda _: None)
    kinds = [p.action for p in s.probes if p.step == 1]
    assert {"width", "depth"} <= set(kinds)
    assert all(p.proxy_loss is not None for p in s.probes)
    within = [
        p for p in s.probes if p.step == 1 and p.measured_ms <= s.goals.step(1) * (1 + config.tolerance)
    ]
    best = min(within, key=lambda p: p.proxy_loss)
    assert (s.steps[0].action, s.steps[0].ratio) == (best.action, best.ratio)
    if s.steps[0].action == "depth":
        assert s.steps[0].removed and len(load_model(s.steps[0].checkpoint).repeats()) < len(det.repeats())


def test_depth_search_without_data_is_refused_before_any_work(tmp_path):
    from edgeprune.api import prune_to_budget

    with pytest.raises(OptionError, match="`actions` depth .* needs `data`"):
        prune_to_budget("yolov8n.yaml", TARGET, speedup=1.5, actions=("width", "depth"), out=tmp_path / "o")
    assert not (tmp_path / "o").exists()
    with pytest.raises(OptionError, match="`actions` must name each of width, depth"):
        SearchConfig(speedup=2, actions=("width", "heads"))


def test_a_probe_within_its_goal_is_not_dropped_when_the_baseline_is_timed_faster(tmp_path, tiny_data):
    det = load_model("yolov8n.yaml", nc=6)
    timings = [10.0]
    holder = {}

    def fn(d, name):
        if "depth" in name:  # timed alongside the later probe, the baseline ran faster: the goal drops 3%
            timings.append(9.4)
        goal = holder["searcher"].goals.step(1) if "searcher" in holder else 10.0
        return goal * (1.01 if "width" in name else 0.9)  # both within the 2% tolerance of their goal

    config = SearchConfig(speedup=2, steps=1, actions=("width", "depth"), probes_per_step=1, bn_images=8)
    scores = {"width": 1.0, "depth": 2.0}
    s = BudgetSearcher(
        det, config, FakeMeter(fn, timings), target=TARGET, out=tmp_path, data=tiny_data,
        proxy=lambda d: scores["depth" if len(d.repeats()) < len(det.repeats()) else "width"], say=lambda _: None,
    )  # fmt: skip
    holder["searcher"] = s
    s.begin()
    best = s._probe(1)
    assert [p.action for p in s.probes] == ["width", "depth"]
    assert best.candidate.action == "width"  # within its own goal, and the better proxy
