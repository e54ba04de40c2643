"""`import edgeprune` stays lean: no optional backend is imported until a feature needs it."""

import json
import subprocess
import sys

import pytest

from edgeprune._optional import require
from edgeprune.errors import MissingBackendError

HEAVY = ["ultralytics", "tensorrt", "tensorflow", "openvino", "ai_edge_litert", "litert_torch", "nncf"]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    [
        "import edgeprune",
        "import edgeprune.cli; edgeprune.cli.build_parser()",
        "from edgeprune.targets import list_targets; list_targets()",
        "import edgeprune.api, edgeprune.demo",
    ],
)
def test_no_heavy_backend_on_import(code):
    loaded = _modules_after(code)
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_missing_backend_names_the_extra():
    with pytest.raises(MissingBackendError, match=r"pip install 'edgeprune\[openvino\]'"):
        require("edgeprune_no_such_backend_xyz", "openvino", "OpenVINO export")


def test_version_comes_from_package_metadata():
    from importlib.metadata import version

    import edgeprune

    assert edgeprune.__version__ == version("edgeprune")
