import time

import numpy as np
import pytest

from edgeprune.profiling import LatencyStats, judge, measure, measure_interleaved, sample_interleaved


def test_stats_match_numpy():
    samples = [5.0, 1.0, 3.0, 2.0, 4.0, 100.0]
    s = LatencyStats.from_samples(samples)
    assert s.n == 6
    assert s.p50 == pytest.approx(np.percentile(samples, 50))
    assert s.p90 == pytest.approx(np.percentile(samples, 90))
    assert s.mean == pytest.approx(np.mean(samples))
    assert s.std == pytest.approx(np.std(samples, ddof=1))
    assert s.cv == pytest.approx(s.std / s.mean)
    assert (s.min, s.max) == (1.0, 100.0)


def test_measure_respects_count_and_min_time():
    calls = []
    s = measure(lambda: calls.append(1), warmup=3, iterations=5, min_time_s=0.0)
    assert s.n == 5 and 3 + 10 + 5 <= len(calls) <= 3 + 50 + 5  # warm-up: 3, then windows of 5 until stable
    t0 = time.perf_counter()
    s = measure(lambda: time.sleep(0.001), warmup=0, iterations=1, min_time_s=0.05)
    assert time.perf_counter() - t0 >= 0.05 and s.n > 1
    assert s.p50 >= 1.0  # milliseconds


def test_max_time_caps_a_slow_model():
    s = measure(lambda: time.sleep(0.01), warmup=0, iterations=10_000, max_time_s=0.1)
    assert 5 <= s.n < 100


def test_interleaved_pools_rounds():
    stats = measure_interleaved({"a": lambda: None, "b": lambda: None}, rounds=3, warmup=0, iterations=4)
    assert stats["a"].n == 12 and stats["b"].n == 12


def test_interleaved_rounds_alternate_their_order():
    order = []
    rounds = sample_interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=4, warmup=0, iterations=2
    )
    assert [len(r) for r in rounds["a"]] == [2, 2, 2, 2] and len(rounds["b"]) == 4
    # rounds run a b, b a, a b, b a: each model twice in a row at every switch of round
    assert "".join(order) == "aabbbbaaaabbbbaa"


def test_warmup_lasts_at_least_warmup_s():
    calls = []

    def fn():
        calls.append(time.perf_counter())
        time.sleep(0.001)

    t0 = time.perf_counter()
    samples = measure(fn, warmup=1, iterations=3, warmup_s=0.1)
    first_timed = calls[-samples.n]
    assert first_timed - t0 >= 0.1  # nothing was timed during the first 0.1 s
    assert samples.n == 3


def test_verdict():
    s = LatencyStats.from_samples([10.0, 12.0, 14.0])
    ok = judge(s, 12.5, "p50")
    assert ok.passed and ok.margin_ms == pytest.approx(0.5)
    bad = judge(s, 12.5, "p90")
    assert not bad.passed and bad.margin_ms < 0 and "FAIL" in bad.sentence()
    with pytest.raises(ValueError):
        s.get("p75")


def test_warmup_runs_until_stable_and_outliers_are_counted_not_dropped():
    calls = []

    def slow_then_fast():
        calls.append(1)
        time.sleep(0.004 if len(calls) <= 7 else 0.001)  # a cold start longer than the minimum warm-up

    s = measure(slow_then_fast, warmup=2, iterations=10)
    # No cold call was timed: after the 2 required calls, the window of calls 3-7 (cold) and the
    # one of 8-12 (warm) disagree, so warm-up went on. Counted in calls, not read off the clock:
    # a shared machine can stretch any single sleep.
    assert len(calls) - s.n >= 12
    assert s.p50 < 3.5
    samples = [1.0] * 50 + [50.0]
    stats = LatencyStats.from_samples(samples)
    assert stats.outliers == 1 and stats.n == 51 and stats.max == 50.0 and stats.p50 == 1.0
