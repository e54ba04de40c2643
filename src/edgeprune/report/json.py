"""Build and write report.json. Its top-level keys are a contract that CI jobs gate on."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeprune.files import write_text_atomic

if TYPE_CHECKING:
    from edgeprune.profiling import LatencyStats, Verdict
    from edgeprune.targets import Target

LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "min", "max", "cv", "n")


def model_block(
    *,
    counts: dict[str, int] | None = None,
    latency: LatencyStats | None = None,
    metrics: dict[str, float] | None = None,
    artifact: str | Path | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One of the report's ``baseline`` / ``result`` entries."""
    block: dict[str, Any] = {
        "params": (counts or {}).get("params"),
        "macs": (counts or {}).get("macs"),
        "latency_ms": {k: getattr(latency, k) for k in LATENCY_KEYS} if latency else None,
        "metrics": dict(metrics or {}),
    }
    if latency is not None and latency.histogram is not None:
        block["latency_histogram"] = latency.histogram_dict()
    if artifact is not None:
        block["artifact"] = str(artifact)
    block.update(extra)
    return block


def build_report(
    *,
    target: Target,
    result: dict[str, Any],
    baseline: dict[str, Any] | None = None,
    verdict: Verdict | None = None,
    environment: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The full report. ``passed`` is None when no latency was measured against the budget."""
    from edgeprune import __version__

    report: dict[str, Any] = {
        "edgeprune_version": __version__,
        "target": target.name,
        "budget": {
            "latency_ms": target.budget.latency_ms,
            "percentile": target.budget.percentile,
            "scope": target.budget.scope,
        },  # fmt: skip
        "baseline": baseline,
        "result": result,
        "passed": verdict.passed if verdict else None,
        "verdict": verdict.to_dict() if verdict else None,
        "environment": environment or {},
    }
    report.update(extra)
    return report


def _clean(obj: Any) -> Any:
    """JSON has no NaN/inf: write them as null rather than produce a file strict parsers reject."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_report(report: dict[str, Any], path: str | Path, html: bool = False) -> Path:
    """Write ``report`` as JSON (atomically); with ``html``, also ``report.html`` beside it, drawn
    from that folder's reports (``report/html.py``)."""
    path = write_text_atomic(path, json.dumps(_clean(report), indent=2) + "\n")
    if html:
        from edgeprune.errors import EdgepruneError
        from edgeprune.report.html import write_beside

        try:
            write_beside(path)
        except (EdgepruneError, OSError, ValueError, KeyError, TypeError) as e:
            # the page is drawn from the reports: a report kept is worth more than a run failed at its end
            print(f"warning: {path.parent / 'report.html'} not written ({type(e).__name__}: {e}); "
                  f"`edgeprune report {path.parent}` draws it again", file=sys.stderr)  # fmt: skip
    return path


SCHEMA = Path(__file__).with_name("report.schema.json")


def report_schema() -> dict[str, Any]:
    """The JSON Schema of the keys every report has (``report.schema.json``), for a CI job to check."""
    return json.loads(SCHEMA.read_text())


def is_report(data: Any) -> bool:
    """A JSON document edgeprune wrote as a report (not analysis.json, not a search state)."""
    return isinstance(data, dict) and "edgeprune_version" in data and "result" in data
