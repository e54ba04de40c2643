"""edgeprune: make object detectors fit an edge device's latency budget.

The package is lean on import: heavy backends (Ultralytics, OpenVINO, TensorRT, LiteRT) are
imported only by the functions that need them, and every public name below is loaded on first
use. ``docs/api.md`` documents each of them.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgeprune")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# public name -> the module that defines it
_EXPORTS = {
    # verbs
    "prune": "edgeprune.api",
    "prune_to_budget": "edgeprune.api",
    "analyze": "edgeprune.api",
    "export": "edgeprune.api",
    "profile": "edgeprune.api",
    "profile_remote": "edgeprune.api",
    "run": "edgeprune.api",
    # what they take and return
    "PruneConfig": "edgeprune.pruning.options",
    "SearchConfig": "edgeprune.pruning.options",
    "PruneOutcome": "edgeprune.api",
    "BudgetOutcome": "edgeprune.api",
    "SearchResult": "edgeprune.pruning.records",
    "ProfileResult": "edgeprune.api",
    "Analysis": "edgeprune.pruning.sensitivity",
    "load_target": "edgeprune.targets",
    "Target": "edgeprune.targets",
    "load_model": "edgeprune.models",
    # latency meters for the budget search
    "LatencyMeter": "edgeprune.profiling.meters",
    "ArtifactMeter": "edgeprune.profiling.meters",
    "RemoteMeter": "edgeprune.profiling.meters",
    "CallableMeter": "edgeprune.profiling.meters",
    # errors
    "EdgepruneError": "edgeprune.errors",
    "OptionError": "edgeprune.errors",
    "ConfigError": "edgeprune.errors",
    "MissingBackendError": "edgeprune.errors",
    "UnsafeCheckpointError": "edgeprune.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value  # resolved once
        return value
    raise AttributeError(f"module 'edgeprune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
