"""Pass/fail against a target's latency budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgeprune.profiling.timing import LatencyStats


@dataclass(frozen=True)
class Verdict:
    passed: bool
    percentile: str
    latency_ms: float
    budget_ms: float
    margin_ms: float  # budget - latency: negative means over budget by that much

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self) -> str:
        word = "PASS" if self.passed else "FAIL"
        rel = "under" if self.margin_ms >= 0 else "over"
        return (
            f"{word}: {self.percentile} {self.latency_ms:.2f} ms vs budget {self.budget_ms:.2f} ms "
            f"({abs(self.margin_ms):.2f} ms {rel})"
        )


def judge(stats: LatencyStats, budget_ms: float, percentile: str) -> Verdict:
    latency = stats.get(percentile)
    return Verdict(latency <= budget_ms, percentile, latency, budget_ms, budget_ms - latency)
