"""The public API: every exported name resolves, is documented, and errors name options."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import edgeprune

from conftest import REPO


def test_every_public_name_resolves_in_a_fresh_process():
    code = "import edgeprune as e; [getattr(e, n) for n in e.__all__]; print(len(e.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(edgeprune.__all__) > 20


@pytest.mark.parametrize("name", [n for n in edgeprune.__all__ if n != "__version__"])
def test_every_public_name_is_documented(name):
    obj = getattr(edgeprune, name)
    assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
    headings = re.findall(r"^#{2,4} .*$", (REPO / "docs" / "api.md").read_text(), flags=re.M)
    documented = {n for h in headings for n in re.findall(r"`(\w+)`", h)}
    assert name in documented, f"docs/api.md has no section for {name}"


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        edgeprune.nope  # noqa: B018


def test_option_errors_name_the_field_and_the_cli_shows_the_flag():
    from edgeprune.errors import OptionError

    with pytest.raises(OptionError, match=r"`max_layer_ratio` must be in \(0, 1\), got 1.5"):
        edgeprune.PruneConfig(ratio=0.3, max_layer_ratio=1.5)
    with pytest.raises(OptionError, match="`steps` must be >= 1"):
        edgeprune.SearchConfig(budget_ms=5, steps=0)
    with pytest.raises(OptionError, match="unknown option `stepz`"):
        edgeprune.prune_to_budget("yolov8n.yaml", "cpu-ort-fp32", stepz=2)
    err = OptionError("`max_layer_ratio` must be in (0, 1); `final_epochs` too")
    from edgeprune.cli import _flag

    assert err.with_names(_flag) == "--max-layer-ratio must be in (0, 1); --epochs too"


def test_a_family_without_training_is_refused_with_what_to_do_instead(tmp_path, tiny_data):
    pytest.importorskip("torchvision")
    from conftest import run_cli

    r = run_cli("prune", "torchvision:resnet18", "-t", "cpu-ort-fp32", "--ratio", "0.3", "--data", str(tiny_data),
                "--epochs", "1", "--imgsz", "64", "--out", str(tmp_path))  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "torchvision models have no detection metric in edgeprune: leave out --data" in r.stderr
