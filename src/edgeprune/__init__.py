"""edgeprune: make object detectors fit an edge device's latency budget.

The package is lean on import: heavy backends (Ultralytics, OpenVINO, TensorRT, LiteRT)
are imported only by the functions that need them. The public verbs are loaded lazily.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgeprune")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

_LAZY = {
    "prune": "edgeprune.api",
    "export": "edgeprune.api",
    "profile": "edgeprune.api",
    "run": "edgeprune.api",
    "load_target": "edgeprune.targets",
    "Target": "edgeprune.targets",
    "EdgepruneError": "edgeprune.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgeprune' has no attribute {name!r}")
