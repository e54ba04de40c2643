"""Where the shipped data files (targets/, calibration/) live.

In a source checkout (editable install) they are the top-level folders of the repository; in a
wheel they are packaged under ``edgeprune/_data``. ``EDGEPRUNE_HOME`` overrides both.
"""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path:
    """Return the folder of shipped ``kind`` files ("targets" or "calibration")."""
    if home := os.environ.get("EDGEPRUNE_HOME"):
        return Path(home) / kind
    packaged = _PKG / "_data" / kind
    if packaged.is_dir():
        return packaged
    return _PKG.parents[1] / kind  # src/edgeprune -> repository root
