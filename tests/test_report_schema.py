"""report.schema.json holds the stable keys; every report the tests write is checked against it at
the end of the session (conftest.pytest_sessionfinish). Here: the schema catches what it should."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest

from conftest import schema_problems

LATENCY = {
    "p50": 5.0,
    "p90": 5.5,
    "p99": 6.0,
    "mean": 5.1,
    "std": 0.2,
    "min": 4.8,
    "max": 6.2,
    "cv": 0.04,
    "n": 50,
}
GOOD = {
    "edgeprune_version": "0.1.0",
    "target": "cpu-ort-fp32",
    "budget": {"latency_ms": 60.0, "percentile": "p50", "scope": "engine"},
    "baseline": None,
    "result": {"params": None, "macs": None, "latency_ms": LATENCY, "metrics": {}, "artifact": "m.onnx"},
    "passed": True,
    "verdict": {"passed": True, "latency_ms": 5.0, "budget_ms": 60.0, "percentile": "p50", "margin_ms": 55.0},
    "environment": {},
}


def _broken(change) -> dict:
    report = copy.deepcopy(GOOD)
    change(report)
    return report


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.pop("passed"),
        lambda r: r["result"].pop("latency_ms"),
        lambda r: r["result"]["latency_ms"].pop("p90"),
        lambda r: r["budget"].update(percentile="p42"),
        lambda r: r.update(warnings="one string"),
        lambda r: r.update(hosts=[{"host": "a", "ok": True}]),
    ],
    ids=["no-passed", "no-latency", "no-p90", "percentile", "warnings-not-a-list", "host-row-keys"],
)
def test_the_schema_refuses_a_report_missing_its_stable_keys(change):
    with tempfile.TemporaryDirectory() as tmp:  # not under the session's folder, which is checked at the end
        folder = Path(tmp)
        (folder / "good.json").write_text(json.dumps(GOOD))
        assert schema_problems(folder) == []
        (folder / "report.json").write_text(json.dumps(_broken(change)))
        assert len(schema_problems(folder)) >= 1


def test_a_hosts_report_whose_host_failed_keeps_the_stable_keys(tmp_path):
    pytest.importorskip("asyncssh")
    import socket

    from edgeprune.api import profile_remote

    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"never read: the host refuses the connection")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report = profile_remote(artifact, "cpu-ort-fp32", [f"me@127.0.0.1:{port}"], json_path=tmp_path / "r.json")
    assert report["passed"] is False and report["hosts"][0]["error"]
    assert report["result"]["latency_ms"] is None and report["verdict"] is None
    assert schema_problems(tmp_path) == []
