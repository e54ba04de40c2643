"""The prune -> fine-tune -> export -> profile path works with no network, and never tries to use it.

Two layers: the process runs in a network namespace with no interfaces (``unshare -rn``, where
the machine allows it), and a ``sitecustomize`` guard logs and refuses every internet socket
operation (DNS lookups included). The test passes only if the commands succeed AND the guard's
log is empty: Ultralytics asked for no font, weights, dataset, AMP-check model or telemetry.
"""

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("ultralytics")

GUARD = """
import os, socket
_LOG = os.environ["EDGEPRUNE_NET_LOG"]

def _refuse(what, detail):
    with open(_LOG, "a") as f:
        import traceback; f.write(f"{what} {detail!r}\\n" + "".join(traceback.format_stack(limit=40)))
    raise OSError(f"network disabled for this test ({what})")

_connect = socket.socket.connect
def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse("connect", address)
    return _connect(self, address)

socket.socket.connect = _guarded_connect
socket.getaddrinfo = lambda *a, **k: _refuse("getaddrinfo", a[:2])
socket.gethostbyname = lambda *a, **k: _refuse("gethostbyname", a[:1])
socket.create_connection = lambda *a, **k: _refuse("create_connection", a[:1])
"""


def _no_network_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return [unshare, "-rn"]
    return []


def test_pipeline_offline(tmp_path, tiny_data):
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "net.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}  # edgeprune must set them itself
    env.update(
        PYTHONPATH=os.pathsep.join([str(guard_dir), env.get("PYTHONPATH", "")]),
        EDGEPRUNE_NET_LOG=str(log),
        HOME=str(tmp_path / "home"),  # a fresh Ultralytics settings dir, as on a new machine
        YOLO_CONFIG_DIR=str(tmp_path / "ultralytics-config"),
    )
    prefix = _no_network_prefix()
    out = tmp_path / "out"
    target = tmp_path / "t.yaml"
    target.write_text(
        "name: t\ndescription: offline test\ndevice: {kind: x86-cpu, name: box}\nruntime: onnxruntime\n"
        "precision: fp32\nimgsz: 64\nthreads: 1\nround_to: 8\nbudget: {latency_ms: 10000, percentile: p50}\n"
        "profiling: {warmup: 1, warmup_s: 0, iterations: 5, min_time_s: 0}\n"
    )
    steps = [
        [
            "prune",
            "yolov8n.yaml",
            "--target",
            str(target),
            "--ratio",
            "0.3",
            "--data",
            str(tiny_data),
            "--epochs",
            "1",
            "--batch",
            "8",
            "--out",
            str(out),
        ],
        ["export", str(out / "pruned.pt"), "--target", str(target), "--out", str(out)],
        ["profile", str(out / "pruned.onnx"), "--target", str(target), "--json", str(out / "report.json")],
        # INT8 with calibration and the artifact's mAP through Ultralytics' validator
        ["export", str(out / "pruned.pt"), "--target", "cpu-ort-int8", "--imgsz", "64", "--calib", str(tiny_data),
         "--calib-images", "4", "--data", str(tiny_data), "--out", str(out / "int8")],
    ]  # fmt: skip
    if importlib.util.find_spec("litert_torch") is not None:  # litert-torch imports jax and Hugging Face hubs
        steps.append(
            ["export", str(out / "pruned.pt"), "--target", "rpi5-tflite-int8", "--imgsz", "64", "--calib",
             str(tiny_data), "--calib-images", "4", "--out", str(out / "tfl")]
        )  # fmt: skip
    if importlib.util.find_spec("nncf") is not None:  # OpenVINO's converter and NNCF have usage telemetry
        steps.append(
            ["export", str(out / "pruned.pt"), "--target", "cpu-openvino-int8", "--imgsz", "64", "--calib",
             str(tiny_data), "--calib-images", "4", "--out", str(out / "ov")]
        )  # fmt: skip
    for step in steps:
        r = subprocess.run(
            [*prefix, sys.executable, "-m", "edgeprune.cli", *step],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert r.returncode == 0, f"{step[0]} failed offline:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert (out / "report.json").is_file()
    attempts = log.read_text() if log.exists() else ""
    assert attempts == "", f"network was attempted:\n{attempts}"
