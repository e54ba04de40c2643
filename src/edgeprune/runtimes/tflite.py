"""TFLite / LiteRT: FP32, FP16 and INT8 ``.tflite`` files without TensorFlow.

``litert-torch`` converts the PyTorch module to a float ``.tflite``; ``ai-edge-quantizer`` makes
the FP16 (float16 weights, float compute) and INT8 (static: int8 weights per channel and int8
activations from calibration images) variants; ``ai-edge-litert`` runs them with the target's
thread count. Detectors are exported with box coordinates divided by the image size
(``Detector.export_module(normalized_boxes=True)``): boxes and class scores then share the
[0, 1] range, so one INT8 scale does not crush the scores, and Ultralytics' LiteRT backend,
which multiplies boxes back by the image size, runs the file as it is. Metadata goes into a
``metadata.json`` entry of a zip appended to the file, where Ultralytics reads it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import re
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune._optional import require
from edgeprune.runtimes.base import ExportRequest, ExportResult, Quantization, Runtime, Session, TensorSpec

if TYPE_CHECKING:
    import torch


def _litert_torch() -> Any:
    return require("litert_torch", "tflite", "PyTorch to TFLite conversion")


def _quantizer() -> Any:
    return require("ai_edge_quantizer", "tflite", "TFLite quantization")


def _interpreter_class() -> Any:
    return require("ai_edge_litert.interpreter", "tflite", "running .tflite models").Interpreter


_CONVERTED: dict[str, bytes] = {}  # the last conversion, by what it was made from


def convert(module: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Float ``.tflite`` of ``module`` (static shapes, NCHW input as in PyTorch).

    A copy is converted: tracing leaves state cached in modules (a YOLO head's anchors) that the
    original must not keep. Conversion takes most of an export (tens of seconds), so the last
    one is kept, by a digest of the module's structure, weights and input shape: exports that
    differ only in quantization (accuracy control remakes one per float unit) convert once.
    """
    import torch

    key = _digest(module, example)
    if key not in _CONVERTED:
        with torch.no_grad():
            _litert_torch().convert(copy.deepcopy(module).eval(), (example,)).export(str(path))
        _CONVERTED.clear()
        _CONVERTED[key] = path.read_bytes()
    else:
        path.write_bytes(_CONVERTED[key])
    return path


def _digest(module: torch.nn.Module, example: torch.Tensor) -> str:
    import torch

    h = hashlib.sha256(repr(module).encode())
    h.update(repr((tuple(example.shape), str(example.dtype))).encode())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    for name, m in module.named_modules():  # plain attributes that change the graph (a head's max_det, ...)
        for key, value in sorted(vars(m).items()):
            if key.startswith("_") and key != "_end2end":
                continue
            if isinstance(value, torch.Tensor):
                h.update(f"{name}.{key}".encode() + value.detach().cpu().contiguous().numpy().tobytes())
            elif isinstance(value, (bool, int, float, str, tuple, list)):
                h.update(f"{name}.{key}={value!r}".encode())
    return h.hexdigest()


def _calibration_inputs(fp32: Path, quantization: Quantization) -> dict[str, list[dict[str, np.ndarray]]]:
    interpreter = _interpreter_class()(str(fp32))
    signature, info = next(iter(interpreter.get_signature_list().items()))
    name = info["inputs"][0]
    return {signature: [{name: batch} for batch in quantization.data.batches(1)]}


def quantize(fp32: Path, out: Path, precision: str, quantization: Quantization | None) -> dict[str, Any]:
    """FP16 or INT8 ``.tflite`` from the float one, with ai-edge-quantizer."""
    aq = _quantizer()
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    logging.getLogger("absl").setLevel(logging.WARNING)
    quantizer = aq.Quantizer(str(fp32))
    every = qtyping.TFLOperationName.ALL_SUPPORTED
    if precision == "fp16":
        fp16 = qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(
                num_bits=16, dtype=qtyping.TensorDataType.FLOAT
            ),
            compute_precision=qtyping.ComputePrecision.FLOAT,
            explicit_dequantize=True,
        )
        quantizer.update_quantization_recipe(".*", every, fp16, AlgorithmName.FLOAT_CASTING)
        quantizer.quantize(enable_progress_bar=False, enable_progress_report=False).export_model(
            str(out), overwrite=True
        )
        return {"weights": "float16"}
    assert quantization is not None
    recipe = quantization.recipe
    granularity = (
        qtyping.QuantGranularity.CHANNELWISE if recipe.per_channel else qtyping.QuantGranularity.TENSORWISE
    )
    quantizer.add_static_config(
        ".*", every, activation_num_bits=8, weight_num_bits=8, weight_granularity=granularity
    )
    patterns = list(quantization.float_patterns)
    if patterns:  # the ops writing the model's outputs are named after the outputs, not the module
        outputs = _interpreter_class()(str(fp32)).get_output_details()
        patterns += [rf"(^|;){re.escape(d['name'])};" for d in outputs]
    for pattern in patterns:  # later entries win: these parts stay float
        quantizer.update_quantization_recipe(pattern, every, None, AlgorithmName.NO_QUANTIZE)
    inputs = _calibration_inputs(fp32, quantization)
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bar cannot be switched off
        calibration = quantizer.calibrate(inputs)
    quantizer.quantize(calibration, enable_progress_bar=False, enable_progress_report=False).export_model(
        str(out), overwrite=True
    )
    return {
        "activations": "int8", "weights": "int8", "per_channel": recipe.per_channel, "method": "minmax",
        "float_patterns": len(patterns),
    }  # fmt: skip


def write_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Append ``metadata.json`` in a zip to the ``.tflite`` (the interpreter ignores trailing bytes)."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", json.dumps(metadata))


class TfliteSession(Session):
    def __init__(self, path: Path, threads: int | None):
        self._it = _interpreter_class()(str(path), num_threads=threads)
        self._it.allocate_tensors()
        self._in = self._it.get_input_details()
        self._out = self._it.get_output_details()
        self.inputs = [
            TensorSpec(d["name"], tuple(int(v) for v in d["shape"]), np.dtype(np.float32)) for d in self._in
        ]
        self.outputs = [
            TensorSpec(d["name"], tuple(int(v) for v in d["shape"]), np.dtype(np.float32)) for d in self._out
        ]

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        for detail, array in zip(self._in, arrays, strict=True):
            if np.dtype(detail["dtype"]) in (np.int8, np.int16, np.uint8):  # integer graph input
                scale, zero = detail["quantization"]
                info = np.iinfo(detail["dtype"])
                array = np.clip(np.round(array / scale + zero), info.min, info.max)
            self._it.set_tensor(detail["index"], np.ascontiguousarray(array, dtype=detail["dtype"]))
        self._it.invoke()
        outputs = []
        for detail in self._out:
            y = self._it.get_tensor(detail["index"])
            if np.dtype(detail["dtype"]) in (np.int8, np.int16, np.uint8):
                scale, zero = detail["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            outputs.append(np.asarray(y, dtype=np.float32))
        return outputs


class TfliteRuntime(Runtime):
    name = "tflite"
    suffix = ".tflite"
    precisions = frozenset({"fp32", "fp16", "int8"})
    normalized_boxes = True
    node_naming = "litert"

    def _export(self, req: ExportRequest) -> ExportResult:
        target, quantization = req.target, req.quantization
        path = req.out_dir / f"{req.stem}{self.suffix}"
        details: dict[str, Any] = {"boxes": "normalized by the image size"}
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = convert(req.module, req.example, Path(tmp) / "fp32.tflite")
            if target.precision == "fp32":
                path.write_bytes(fp32.read_bytes())
            else:
                details["quantization"] = quantize(fp32, path, target.precision, quantization)
        write_metadata(path, {**req.metadata, "precision": target.precision})
        return self._result(req, path, details)

    def load(self, artifact: Path, *, threads: int | None = None) -> Session:
        return TfliteSession(Path(artifact), threads)

    def read_metadata(self, artifact: Path) -> dict[str, Any]:
        try:
            with zipfile.ZipFile(artifact) as z:
                return json.loads(z.read("metadata.json"))
        except (zipfile.BadZipFile, KeyError, ValueError):
            return {}

    def environment(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"runtime": f"ai-edge-litert {version('ai-edge-litert')}", "delegate": "XNNPACK (CPU)"}
