"""``trtexec``: the command lines that build and time a TensorRT engine, and its report parsed.

On a Jetson without edgeprune, ``edgeprune profile --host`` builds the engine from the ONNX file
with ``trtexec`` at the target's precision and reads the latency summary it prints. trtexec's
``Latency`` is host latency (input copy, compute, output copy), the figure comparable with
``edgeprune profile``'s; its ``GPU Compute Time`` is kept next to it.
"""

from __future__ import annotations

import math
import re
from typing import Any

from edgeprune.errors import EdgepruneError
from edgeprune.profiling.timing import LatencyStats

_NUMBER = r"([0-9.]+(?:[eE][-+]?[0-9]+)?)"


def build_command(onnx: str, engine: str, precision: str, workspace_mb: int = 2048) -> list[str]:
    """The ``trtexec`` line that builds the engine (no timing; ``--skipInference``).

    FP16 is enabled for INT8 too: layers without Q/DQ (the box decode) then run in FP16 rather
    than FP32. The TensorRT export writes this line next to its ONNX file.
    """
    cmd = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}", f"--memPoolSize=workspace:{workspace_mb}M"]
    if precision in ("fp16", "int8"):
        cmd.append("--fp16")
    if precision == "int8":
        cmd.append("--int8")
    return [*cmd, "--skipInference"]


def time_command(engine: str, *, warmup_ms: int, iterations: int, min_time_s: float) -> list[str]:
    """Time an engine: warm-up in milliseconds, at least ``iterations`` queries and ``min_time_s``."""
    return [
        "trtexec", f"--loadEngine={engine}", f"--warmUp={warmup_ms}", f"--iterations={iterations}",
        f"--duration={max(0, math.ceil(min_time_s))}", "--avgRuns=1",
    ]  # fmt: skip


def _summary(text: str, label: str) -> dict[str, float] | None:
    line = next(
        (ln for ln in text.splitlines() if re.search(rf"\]\s+{re.escape(label)}: min = ", ln) or
         re.match(rf"\s*{re.escape(label)}: min = ", ln)),
        None,
    )  # fmt: skip
    if line is None:
        return None
    values = {k: float(v) for k, v in re.findall(rf"(min|max|mean|median) = {_NUMBER} ms", line)}
    for pct, v in re.findall(rf"percentile\(([0-9.]+)%\) = {_NUMBER} ms", line):
        values[f"p{float(pct):g}"] = float(v)
    return values


def parse_report(text: str) -> dict[str, Any]:
    """Latency statistics from trtexec's "Performance summary".

    Returns ``{"latency": LatencyStats, "gpu_compute": LatencyStats | None, "throughput_qps": float,
    "queries": int}``. trtexec prints no standard deviation, so ``std`` and ``cv`` are NaN, and
    ``p90`` is NaN from TensorRT versions that print only the 99th percentile.
    """
    host = _summary(text, "Latency")
    if host is None:
        raise EdgepruneError("no 'Latency: min = ...' line in the trtexec output (did the engine run?)")
    queries = re.search(r"Timing trace has (\d+) queries", text)
    qps = re.search(rf"Throughput: {_NUMBER} qps", text)
    n = int(queries.group(1)) if queries else 0

    def stats(v: dict[str, float]) -> LatencyStats:
        nan = float("nan")
        return LatencyStats(
            n=n, p50=v["median"], p90=v.get("p90", nan), p99=v.get("p99", nan), mean=v["mean"],
            std=nan, min=v["min"], max=v["max"], cv=nan,
        )  # fmt: skip

    gpu = _summary(text, "GPU Compute Time")
    return {
        "latency": stats(host),
        "gpu_compute": stats(gpu) if gpu else None,
        "throughput_qps": float(qps.group(1)) if qps else None,
        "queries": n,
    }
