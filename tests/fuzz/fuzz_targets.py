"""Coverage-guided fuzzers (atheris, libFuzzer's engine) of the loaders that read user files.

    python tests/fuzz/fuzz_targets.py TARGET [libFuzzer flags, e.g. -runs=500 -seed=1 CORPUS_DIR]

Targets: ``checkpoint`` (the bytes of a .pt file), ``pickle`` (the data.pkl inside a well-formed
torch archive: reaches the restricted unpickler), ``onnx``, ``tflite`` and ``openvino`` (an artifact
loaded with ``Runtime.open``), ``target`` (a target YAML). A finding is any exception other than
edgeprune's own error types, or a crash. With ``FUZZ_FINDINGS=FILE`` each distinct finding is
appended to FILE and the run goes on (``benchmarks/fuzz.py``); without it the first one stops the run
with libFuzzer's crash report (the CI test).
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path

import atheris

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

with atheris.instrument_imports(include=["edgeprune"]):
    from edgeprune.errors import EdgepruneError
    from edgeprune.models.safe_load import safe_torch_load
    from edgeprune.targets import validate_target_file

SCRATCH = Path(tempfile.mkdtemp(prefix="edgeprune-fuzz-"))
FINDINGS = os.environ.get("FUZZ_FINDINGS")
_seen: set[str] = set()


def _file(name: str, data: bytes) -> Path:
    path = SCRATCH / name
    path.write_bytes(data)
    return path


def _archive(pickled: bytes) -> bytes:
    """A torch.save-style zip around ``pickled``, with one 16-byte storage record."""
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickled)
        z.writestr("archive/data/0", bytes(16))
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
    return f.getvalue()


def _runtime_open(name: str, suffix: str):
    from edgeprune.runtimes import get_runtime

    runtime = get_runtime(name)

    def run(data: bytes) -> None:
        path = _file(f"model{suffix}", data)
        if name == "openvino":  # an IR is the .xml and its .bin: fuzz the graph, keep a small .bin
            _file("model.bin", bytes(64))
        runtime.open(path, threads=1)

    return run


TARGETS = {
    "checkpoint": lambda data: safe_torch_load(_file("m.pt", data)),
    "pickle": lambda data: safe_torch_load(_file("p.pt", _archive(data))),
    "onnx": _runtime_open("onnxruntime", ".onnx"),
    "tflite": _runtime_open("tflite", ".tflite"),
    "openvino": _runtime_open("openvino", ".xml"),
    "target": lambda data: validate_target_file(_file("t.yaml", data)),
}


def _finding(e: BaseException) -> None:
    frames = traceback.extract_tb(e.__traceback__)
    where = next((f"{fr.filename}:{fr.lineno}" for fr in reversed(frames) if "edgeprune" in fr.filename), "")
    key = f"{type(e).__name__} at {where or (frames[-1].filename if frames else '?')}"
    if key in _seen:
        return
    _seen.add(key)
    with open(FINDINGS, "a") as f:
        f.write(json.dumps({"finding": key, "message": str(e)[:300]}) + "\n")


def main() -> None:
    name = sys.argv[1]
    target = TARGETS[name]

    def one(data: bytes) -> None:
        try:
            target(data)
        except EdgepruneError:
            pass
        except Exception as e:  # noqa: BLE001 (a finding: anything but edgeprune's own errors)
            if FINDINGS is None:
                raise
            _finding(e)

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
