"""Conditions that make a timing untrustworthy, found while it is taken and reported beside it.

Three are checked here, as the governor and thermal checks of the remote profiler are there:

* more intra-op threads than the CPUs this process may run on: the runtime's threads then take
  turns on the cores and the spread of the timings grows (cv 15-25% seen with 4 threads on 2 cores);
* other processes using those CPUs while the timing runs: measured, not guessed from the load
  average, as the CPUs' busy time in ``/proc/stat`` minus this process's own CPU time;
* a coefficient of variation over 10%.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

CV_LIMIT = 0.10  # timings spreading more than this do not pin a latency down
OTHERS_LIMIT = 0.25  # cores' worth of other processes' work during the timing


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity), else all of them."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _busy_seconds(cpus: list[int]) -> float | None:
    """Busy time (all but idle and iowait) of ``cpus`` since boot, from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except (OSError, ValueError):
        return None
    wanted = {f"cpu{i}" for i in cpus}
    ticks = 0
    found = 0
    for line in lines:
        name, *fields = line.split() or [""]
        if name in wanted:
            try:
                values = [int(v) for v in fields[:8]]
                ticks += sum(values) - values[3] - values[4]  # idle, iowait
            except (ValueError, IndexError):  # an unusual /proc (gVisor, LXCFS): not measured
                return None
            found += 1
    if found != len(wanted):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class CpuWatch:
    """What other processes did on this process's CPUs during a timing (``watch_cpu``)."""

    cpus: int
    wall_s: float = 0.0
    others_cores: float | None = None  # average number of cores other processes kept busy


@contextmanager
def watch_cpu() -> Iterator[CpuWatch]:
    """Measure other processes' CPU use on this process's CPUs while the block runs."""
    cpus = usable_cpus()
    watch = CpuWatch(len(cpus))
    busy0, own0, wall0 = _busy_seconds(cpus), _own_seconds(), time.perf_counter()
    yield watch
    busy1, own1 = _busy_seconds(cpus), _own_seconds()
    watch.wall_s = time.perf_counter() - wall0
    if busy0 is not None and busy1 is not None and watch.wall_s >= 1.0:
        # own time counts threads on any CPU; with an affinity mask they run on these. Both counters
        # tick at SC_CLK_TCK: each CPU may be a tick off at either end, which is not others' work
        slack = 2 * len(cpus) / os.sysconf("SC_CLK_TCK")
        watch.others_cores = max(0.0, (busy1 - busy0) - (own1 - own0) - slack) / watch.wall_s


def timing_warnings(stats: Any, threads: int | None, watch: CpuWatch | None = None) -> list[str]:
    """One line per condition that makes ``stats`` (a LatencyStats) less trustworthy."""
    cores = watch.cpus if watch is not None else len(usable_cpus())
    warnings = []
    if threads is not None and threads > cores:
        warnings.append(
            f"the target asks for {threads} threads but this process may run on {cores} CPUs: the threads take "
            f"turns and the timings spread; set the target's threads to {cores} or fewer to time this machine"
        )
    if watch is not None and watch.others_cores is not None and watch.others_cores > OTHERS_LIMIT:
        warnings.append(
            f"other processes kept {watch.others_cores:.2f} of {cores} CPUs busy while timing: the numbers include "
            "their interference; time again on a quiet machine, or compare runs measured side by side"
        )
    cv = getattr(stats, "cv", None)
    if cv is not None and cv > CV_LIMIT:
        warnings.append(
            f"timings spread with a cv of {cv:.0%} (over {CV_LIMIT:.0%}): a single number from them is uncertain; "
            "check the CPU governor and other load, or time longer"
        )
    return warnings
