"""Optional backends, imported on demand with a message naming the extra to install."""

from __future__ import annotations

import os
import sys
from importlib import import_module
from pathlib import Path
from types import ModuleType

from edgeprune.errors import MissingBackendError


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise MissingBackendError naming ``pip install 'edgeprune[extra]'``."""
    try:
        return import_module(module)
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        if e.name and e.name.split(".")[0] != top:
            raise  # the backend is there but one of *its* dependencies is missing: show the real error
        raise MissingBackendError(module, extra, purpose) from None


_FONT_MODULES = ("ultralytics.utils.checks", "ultralytics.data.utils", "ultralytics.utils.plotting")


def ultralytics() -> ModuleType:
    """Import Ultralytics with everything that would reach the network switched off.

    Ultralytics checks connectivity at import (a DNS lookup), sends usage events, auto-installs
    packages and downloads fonts, weights and datasets. edgeprune works offline: the switches
    Ultralytics has are set before its first import (unless the user set them), and its font
    check, which downloads Arial on every dataset check whatever those switches say, is replaced
    by one that only looks on disk. Weights and datasets are never fetched because edgeprune
    refuses a missing file before Ultralytics sees it.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_VERBOSE", "0")
    ul = require("ultralytics", "yolo", "Ultralytics YOLO models")
    for name in _FONT_MODULES:
        module = import_module(name)
        if getattr(module, "check_font", None) is not _local_font:
            module.check_font = _local_font
    return ul


def _local_font(font: str = "Arial.ttf") -> Path:
    """Ultralytics' ``check_font`` without the download: the font if it is on disk, else DejaVu Sans.

    DejaVu Sans ships inside matplotlib (an Ultralytics dependency), so plots still get a
    TrueType font with wide Unicode coverage.
    """
    from matplotlib import font_manager
    from ultralytics.utils import USER_CONFIG_DIR

    name = Path(font).name
    if (USER_CONFIG_DIR / name).exists():
        return USER_CONFIG_DIR / name
    for entry in font_manager.fontManager.ttflist:
        if name in entry.fname and os.path.exists(entry.fname):
            return Path(entry.fname)
    return Path(font_manager.findfont("DejaVu Sans", fallback_to_default=True))


def openvino() -> ModuleType:
    """Import OpenVINO with its usage telemetry off.

    OpenVINO's model converter and NNCF send anonymous usage events unless a consent file in the
    user's home says no (or a CI variable is set). Both fall back to a no-op when the
    ``openvino_telemetry`` package cannot be imported, so edgeprune makes it unimportable in this
    process (and sets NNCF's own switch) instead of writing to the user's consent file.
    """
    sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import raises ImportError
    for name in [m for m in sys.modules if m.startswith("openvino_telemetry.")]:
        del sys.modules[name]
    os.environ.setdefault("NNCF_CI", "1")
    return require("openvino", "openvino", "OpenVINO export and inference")


def nncf() -> ModuleType:
    """Import NNCF (OpenVINO's quantizer) with telemetry off, see ``openvino()``."""
    openvino()
    return require("nncf", "openvino", "INT8 quantization for OpenVINO")
