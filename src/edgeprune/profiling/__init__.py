"""Timing statistics, the environment record and the budget verdict."""

from edgeprune.profiling.budget import Verdict, judge
from edgeprune.profiling.environment import collect_environment
from edgeprune.profiling.timing import (
    LatencyStats,
    measure,
    measure_interleaved,
    measure_profiled,
    profiled,
    sample,
    sample_interleaved,
)

__all__ = [
    "LatencyStats",
    "Verdict",
    "collect_environment",
    "judge",
    "measure",
    "measure_interleaved",
    "measure_profiled",
    "profiled",
    "sample",
    "sample_interleaved",
]
