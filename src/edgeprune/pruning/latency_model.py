"""Latency against MACs, interpolated between the artifacts a search has measured so far."""

from __future__ import annotations

import numpy as np


class LatencyModel:
    """Latency as a function of MACs, interpolated between artifacts measured so far.

    Piecewise linear through the measured points: latency is not proportional to MACs (fixed
    per-layer costs, memory-bound layers), but between two nearby measured architectures of
    the same family it is close to a straight line.
    """

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def add(self, macs: float, ms: float) -> None:
        self.points.append((float(macs), float(ms)))

    def predict(self, macs: float) -> float:
        """Latency at ``macs``: along the line through the measured points nearest in MACs
        (bracketing ``macs`` where possible), proportional to MACs while only one point exists.

        Points closer than ``MERGE`` (relative MACs) are averaged first: two probes of nearly the
        same size differ mostly by timing noise, and a line through them would extrapolate that
        noise. So are neighbours where the smaller model measured slower (pool adjacent
        violators): latency is taken as non-decreasing in MACs. Outside the measured range the nearest segment at least ``SPAN`` wide is extended,
        its slope kept between ``FLAT`` x the least-squares slope of all points (a flatter segment
        is timing noise, and extended it sends probes far below their goal) and the nearest
        point's latency per MAC (a steeper one would mean a negative fixed cost).
        """
        if not self.points:
            raise ValueError("no measured point yet")
        pts = self._merged()
        if len(pts) == 1:
            x0, y0 = pts[0]
            return float(y0 * macs / max(x0, 1.0))
        below = [p for p in pts if p[0] <= macs]
        above = [p for p in pts if p[0] > macs]
        if below and above:
            (x0, y0), (x1, y1) = below[-1], above[0]
        else:
            near = min(pts, key=lambda p: abs(p[0] - macs))
            wide = [p for p in pts if abs(p[0] - near[0]) >= self.SPAN * max(near[0], 1.0)]
            if not wide:
                return float(near[1] * macs / max(near[0], 1.0))
            other = min(wide, key=lambda p: abs(p[0] - near[0]))
            (x0, y0), (x1, y1) = sorted([near, other])
            slope = (y1 - y0) / (x1 - x0)
            if len(pts) >= 3 and slope > 0:
                fit = float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0])
                slope = min(max(slope, self.FLAT * fit), near[1] / max(near[0], 1.0))
                return float(near[1] + slope * (macs - near[0]))
        slope = (y1 - y0) / (x1 - x0)
        if slope <= 0:  # equal timings (a pooled pair): proportional to the nearest point
            xn, yn = min(pts, key=lambda p: abs(p[0] - macs))
            return float(yn * macs / max(xn, 1.0))
        return float(y0 + slope * (macs - x0))

    MERGE = 0.05
    SPAN = 0.15
    FLAT = 0.85

    def _merged(self) -> list[tuple[float, float]]:
        clusters: list[list[tuple[float, float]]] = []
        for x, y in sorted(self.points):
            if clusters and x - clusters[-1][0][0] <= self.MERGE * max(clusters[-1][0][0], 1.0):
                clusters[-1].append((x, y))
            else:
                clusters.append([(x, y)])
        # pool adjacent violators: a smaller model measured slower than a larger one is timing noise
        # (or a runtime quirk the next probes step over); the two become one point at their means, so
        # no segment has a negative slope and latency does not fall as MACs grow
        pooled: list[list[tuple[float, float]]] = []
        for c in clusters:
            pooled.append(c)
            while len(pooled) > 1 and _mean(pooled[-2])[1] > _mean(pooled[-1])[1]:
                pooled[-2:] = [pooled[-2] + pooled[-1]]
        return [_mean(c) for c in pooled]


def _mean(points: list[tuple[float, float]]) -> tuple[float, float]:
    return sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)
