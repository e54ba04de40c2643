"""The conditions a latency was measured under, recorded next to the number."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo), falling back to the platform's answer."""
    info = _read("/proc/cpuinfo") or ""
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    info = _read("/proc/cpuinfo") or ""
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def collect_environment(
    runtime_info: dict[str, Any] | None = None, threads: int | None = None
) -> dict[str, Any]:
    """CPU, cores, threads used, OS, Python and package versions, plus what the runtime reports."""
    from edgeprune import __version__

    flags = cpu_flags()
    env: dict[str, Any] = {
        "host": platform.node(),
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "edgeprune": __version__,
        "cpu_features": sorted(
            f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "asimd") if f in flags
        ),
    }
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if governor:
        env["cpu_governor"] = governor
    env.update(runtime_info or {})
    return env
