"""ONNX Runtime: FP32, FP16 and static INT8 (QDQ) ONNX files, run on the CPU execution provider.

INT8 is static QDQ quantization with ``onnxruntime.quantization``: per-channel weight scales,
activation ranges from calibration images, and the nodes the recipe keeps in float (a detector's
box decode) excluded. The quantized types follow the CPU unless the recipe fixes them
(:func:`int8_types`): on x86 ONNX Runtime's fast INT8 kernels take uint8 activations with int8
weights (u8s8); without VNNI their multiply instruction can saturate, which ``reduce_range``
(7-bit weights) avoids; on ARM, int8 activations (s8s8) are the native path.
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.runtimes.base import (
    ExportRequest,
    ExportResult,
    Quantization,
    Runtime,
    Session,
    TensorSpec,
)

if TYPE_CHECKING:
    import onnx
    import torch

    from edgeprune.calibration import CalibrationRecipe

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8
}  # fmt: skip
OPSET = 17


def export_onnx(module: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Trace ``module`` to an ONNX file with static shapes (edge runtimes want them)."""
    import torch

    module = module.eval()
    with torch.no_grad():
        outputs = module(example)
    n_out = len(outputs) if isinstance(outputs, (tuple, list)) else 1
    output_names = ["output0"] if n_out == 1 else [f"output{i}" for i in range(n_out)]
    with torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=["images"],
            output_names=output_names,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,  # the TorchScript exporter keeps YOLO graphs simple and needs no onnxscript
        )
    return path


def write_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` as the model's string properties (where Ultralytics reads them)."""
    if not metadata:
        return
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {k: str(v) for k, v in metadata.items()})
    onnx.save(model, str(path))


def read_metadata(path: Path) -> dict[str, Any]:
    """The model's string properties, read back into Python values where they are literals."""
    import ast

    import onnx

    out: dict[str, Any] = {}
    for prop in onnx.load(str(path), load_external_data=False).metadata_props:
        try:
            out[prop.key] = ast.literal_eval(prop.value)
        except (ValueError, SyntaxError):
            out[prop.key] = prop.value
    return out


def int8_types(recipe: CalibrationRecipe, flags: set[str], machine: str) -> dict[str, Any]:
    """Activation/weight types and ``reduce_range`` for this CPU, where the recipe says ``auto``."""
    arm = machine.lower() in ("aarch64", "arm64") or machine.lower().startswith("arm")
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    if arm:
        auto = {"activations": "int8", "weights": "int8", "reduce_range": False, "why": "ARM: s8s8 kernels"}
    elif vnni:
        auto = {
            "activations": "uint8",
            "weights": "int8",
            "reduce_range": False,
            "why": "x86 with VNNI: u8s8",
        }
    else:
        auto = {
            "activations": "uint8", "weights": "int8", "reduce_range": True,
            "why": "x86 without VNNI: u8s8 with 7-bit weights (avoids saturation; s8s8 ran slower than FP32)",
        }  # fmt: skip
    chosen = {
        "activations": recipe.activations if recipe.activations != "auto" else auto["activations"],
        "weights": recipe.weights if recipe.weights != "auto" else auto["weights"],
        "reduce_range": recipe.reduce_range if recipe.reduce_range != "auto" else auto["reduce_range"],
    }
    chosen["why"] = auto["why"] if chosen == {k: auto[k] for k in chosen} else "set by the recipe"
    return chosen


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a CalibrationData."""

    def __init__(self, quantization: Quantization, input_name: str):
        self._batches = quantization.data.batches(quantization.recipe.batch)
        self._name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._name: batch}


def quantize_int8(
    fp32: Path, out: Path, quantization: Quantization, *, for_tensorrt: bool = False
) -> dict[str, Any]:
    """Static QDQ INT8 of ``fp32`` into ``out``; returns what was chosen (types, excluded nodes).

    ``for_tensorrt``: the explicit-quantization form TensorRT builds from: int8 activations and
    weights, both symmetric (zero point 0), whatever this CPU would prefer.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgeprune.profiling.environment import cpu_flags

    recipe = quantization.recipe
    if for_tensorrt:
        types = {
            "activations": "int8",
            "weights": "int8",
            "reduce_range": False,
            "why": "TensorRT: symmetric s8s8",
        }
    else:
        types = int8_types(recipe, cpu_flags(), platform.machine())
    extra: dict[str, Any] = {"CalibPercentile": recipe.percentile} if recipe.method == "percentile" else {}
    if for_tensorrt:
        extra.update(ActivationSymmetric=True, WeightSymmetric=True)
    qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[recipe.method]
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:  # shape inference + graph cleanup, as onnxruntime recommends before quantizing
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=False)
        except Exception:  # noqa: BLE001 - an unusual graph: quantize it as exported
            prepared = fp32
        model = onnx.load(str(prepared))
        excluded = [n.name for n in model.graph.node if quantization.keeps_float(n.name)]
        if quantization.float_patterns and not excluded:
            raise EdgepruneError(
                f"recipe {recipe.name!r} keeps parts in float but no node of the exported graph matches "
                f"{list(quantization.float_patterns)}; the model family does not name them"
            )
        quantize_static(
            str(prepared),
            str(out),
            _Reader(quantization, model.graph.input[0].name),
            quant_format=QuantFormat.QDQ,
            per_channel=recipe.per_channel,
            reduce_range=types["reduce_range"],
            activation_type=qtype[types["activations"]],
            weight_type=qtype[types["weights"]],
            calibrate_method=method,
            nodes_to_exclude=excluded,
            extra_options=extra,
        )
    return {**types, "float_nodes": len(excluded), "method": recipe.method, "per_channel": recipe.per_channel}


def convert_fp16(fp32: Path, out: Path) -> None:
    """FP16 weights and activations, FP32 inputs and outputs (pre/post-processing stays float32)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model: onnx.ModelProto = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    onnx.save(model, str(out))


class OrtSession(Session):
    def __init__(self, path: Path, threads: int | None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.inputs = [self._spec(i) for i in self._sess.get_inputs()]
        self.outputs = [self._spec(o) for o in self._sess.get_outputs()]
        self._names = [i.name for i in self.inputs]

    @staticmethod
    def _spec(node) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else 1 for d in node.shape)
        return TensorSpec(node.name, shape, np.dtype(_ORT_DTYPES.get(node.type, np.float32)))

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        return self._sess.run(None, dict(zip(self._names, arrays, strict=True)))


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    suffix = ".onnx"
    precisions = frozenset({"fp32", "fp16", "int8"})

    def _export(self, req: ExportRequest) -> ExportResult:
        module, example, target, quantization = req.module, req.example, req.target, req.quantization
        path = req.out_dir / f"{req.stem}{self.suffix}"
        details: dict[str, Any] = {"opset": OPSET}
        if target.precision == "fp32":
            export_onnx(module, example, path)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                fp32 = export_onnx(module, example, Path(tmp) / "fp32.onnx")
                if target.precision == "fp16":
                    convert_fp16(fp32, path)
                else:
                    assert quantization is not None  # checked by Runtime.export
                    details["quantization"] = quantize_int8(fp32, path, quantization)
        write_metadata(path, {**req.metadata, "precision": target.precision})
        return self._result(req, path, details)

    def load(self, artifact: Path, *, threads: int | None = None) -> Session:
        return OrtSession(Path(artifact), threads)

    def read_metadata(self, artifact: Path) -> dict[str, Any]:
        return read_metadata(Path(artifact))

    def environment(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"runtime": f"onnxruntime {ort.__version__}", "provider": "CPUExecutionProvider"}
