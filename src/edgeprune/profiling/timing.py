"""Latency statistics: warm-up until stable, then timed runs until both a count and a minimum time.

Warm-up: at least ``warmup`` untimed runs and at least ``warmup_s`` seconds of them, then more in
windows of 5 until the median of a window is within 5% of the previous window's (caches, lazy
allocation and clock ramp-up have settled), at most 10 windows more. The time floor is cheap
insurance (``trtexec --warmUp`` is the same idea): a small model run right after a large one can
run slower for a second or so although successive windows already agree (measured in
docs/latency.md).

Outliers: every timed run is kept, nothing is trimmed. The verdict uses a percentile, which a few
outliers (a context switch, a page fault) barely move; ``outliers`` counts the runs above
``p75 + 3 x IQR`` so that a report shows how many there were, and ``cv`` (std / mean) how noisy
the run was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np

Percentile = Literal["p50", "p90", "p99", "mean"]
"""The statistics a budget can be judged on."""
PERCENTILES: tuple[str, ...] = get_args(Percentile)


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per inference over ``n`` timed runs."""

    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    cv: float  # std / mean
    outliers: int = 0  # runs above p75 + 3 * (p75 - p25): counted, never dropped
    # the distribution the statistics summarize, for the HTML report's plot: (bin edges ms, counts)
    histogram: tuple[tuple[float, ...], tuple[int, ...]] | None = field(
        default=None, compare=False, repr=False
    )

    @classmethod
    def from_samples(cls, samples_ms: list[float] | np.ndarray) -> LatencyStats:
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no latency samples")
        p25, p50, p75, p90, p99 = np.percentile(a, [25, 50, 75, 90, 99])
        mean, std = float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0
        return cls(
            n=int(a.size),
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
            mean=mean,
            std=std,
            min=float(a.min()),
            max=float(a.max()),
            cv=std / mean if mean > 0 else 0.0,
            outliers=int((a > p75 + 3 * (p75 - p25)).sum()),
            histogram=_histogram(a),
        )

    def get(self, percentile: str) -> float:
        """The statistic a budget is judged on ("p50", "p90", "p99" or "mean")."""
        if percentile not in PERCENTILES:
            raise ValueError(f"unknown percentile {percentile!r}; expected one of {PERCENTILES}")
        return getattr(self, percentile)

    def to_dict(self) -> dict[str, float]:
        out = asdict(self)
        del out["histogram"]  # the statistics; the distribution is ``histogram_dict``'s
        return out

    def histogram_dict(self) -> dict[str, list[float]] | None:
        if self.histogram is None:
            return None
        edges, counts = self.histogram
        return {"edges_ms": list(edges), "counts": list(counts)}


def _histogram(a: np.ndarray) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Counts in up to 40 equal bins from the fastest run to the slowest (Freedman-Diaconis width)."""
    bins = min(40, max(5, len(np.histogram_bin_edges(a, bins="fd")) - 1)) if a.size > 1 else 1
    counts, edges = np.histogram(a, bins=bins)
    return tuple(round(float(e), 5) for e in edges), tuple(int(c) for c in counts)


def sample(
    fn: Callable[[], object],
    *,
    warmup: int = 10,
    iterations: int = 100,
    min_time_s: float = 0.0,
    max_time_s: float | None = None,
    warmup_s: float = 0.0,
) -> list[float]:
    """Milliseconds of each timed call of ``fn``, after at least ``warmup`` untimed calls and
    ``warmup_s`` seconds of them (more until two successive windows of 5 agree within 5%).

    Runs at least ``iterations`` times and at least ``min_time_s`` seconds in total; a
    ``max_time_s`` cap stops early (keeping at least 5 samples) so a slow model cannot hang a run.
    """
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    while time.perf_counter() - start < warmup_s:
        fn()
    if warmup > 0 or warmup_s > 0:  # then until two successive windows agree
        previous = None
        for _ in range(10):
            window = []
            for _ in range(5):
                t0 = time.perf_counter()
                fn()
                window.append(time.perf_counter() - t0)
            median = float(np.median(window))
            if previous is not None and abs(median - previous) <= 0.05 * previous:
                break
            previous = median
    samples: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - start
        if len(samples) >= iterations and elapsed >= min_time_s:
            break
        if max_time_s is not None and elapsed >= max_time_s and len(samples) >= 5:
            break
    return samples


def measure(fn: Callable[[], object], **kwargs: Any) -> LatencyStats:
    """Statistics of ``sample(fn, **kwargs)``."""
    return LatencyStats.from_samples(sample(fn, **kwargs))


def profiled(settings: Any) -> dict[str, Any]:
    """A target's profiling settings (``warmup``, ``warmup_s``, ``iterations``, ``min_time_s``) as
    keyword arguments of ``sample``, ``measure`` and ``sample_interleaved``."""
    return {
        "warmup": settings.warmup, "warmup_s": settings.warmup_s, "iterations": settings.iterations,
        "min_time_s": settings.min_time_s,
    }  # fmt: skip


def measure_profiled(fn: Callable[[], object], settings: Any, **kwargs: Any) -> LatencyStats:
    """``measure`` with a target's profiling settings: how ``edgeprune profile`` times an artifact
    on its own."""
    return measure(fn, **profiled(settings), **kwargs)


def sample_interleaved(
    fns: dict[str, Callable[[], object]], *, rounds: int = 3, **kwargs: Any
) -> dict[str, list[list[float]]]:
    """Samples of several models timed in alternating rounds, round by round.

    Each round runs ``sample(fn, **kwargs)`` for every function in turn, in reverse order every
    other round (A B, B A, ...), so that a model does not always run right after the same one and
    a steady drift in load hits both alike. Returns ``{name: [samples of round 1, round 2, ...]}``.
    """
    from edgeprune.progress import track

    per_round: dict[str, list[list[float]]] = {name: [] for name in fns}
    names = list(fns)
    with track(rounds * len(names), "timing rounds") as bar:
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                per_round[name].append(sample(fns[name], **kwargs))
                bar.advance()
    return per_round


def measure_interleaved(
    fns: dict[str, Callable[[], object]], *, rounds: int = 3, **kwargs: Any
) -> dict[str, LatencyStats]:
    """Time several models in alternating rounds so that drift in machine load hits all of them alike.

    The rounds of ``sample_interleaved``; a model's statistics pool its rounds. This is how two
    models are compared on a noisy machine: as a ratio measured in one run.
    """
    per_round = sample_interleaved(fns, rounds=rounds, **kwargs)
    return {name: LatencyStats.from_samples([x for r in rs for x in r]) for name, rs in per_round.items()}
