"""TensorRT: FP16 and INT8 engines built from ONNX, on the device that will run them.

Engines are specific to a GPU and a TensorRT version, so the export always writes what the device
needs to build one: ``STEM.onnx`` (for INT8 an explicit-quantization Q/DQ ONNX: symmetric INT8
activations and per-channel weights calibrated on the recipe's images, the box decode left
without Q/DQ so it runs in FP16/FP32) and ``STEM.trtexec.sh``, the equivalent ``trtexec`` build
command. Where TensorRT and an NVIDIA GPU are present (a Jetson with JetPack), the engine is
built too, through the TensorRT Python API, as ``STEM.engine`` with Ultralytics' metadata header
(4-byte length, JSON, engine bytes) so ``YOLO("STEM.engine")`` runs it.

What was run where: the ONNX preparation, the Q/DQ calibration and the command lines are tested
on a CPU-only machine; building and running engines needs TensorRT and a GPU and is not exercised
by the test suite there (those tests skip, saying so).
"""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune._optional import require
from edgeprune.errors import EdgepruneError
from edgeprune.profiling.trtexec import build_command
from edgeprune.runtimes.base import (
    ExportRequest,
    ExportResult,
    Runtime,
    Session,
    TensorSpec,
)
from edgeprune.runtimes.onnxruntime import (
    OrtSession,
    export_onnx,
    quantize_int8,
    read_metadata,
    write_metadata,
)

if TYPE_CHECKING:
    import torch


WORKSPACE_MB = 2048  # fits the 8 GB Jetsons with room for the application


def engine_header(data: bytes) -> tuple[int, dict[str, Any]]:
    """Offset of the engine bytes and the metadata of an engine file with Ultralytics' header."""
    if len(data) > 4:
        n = int.from_bytes(data[:4], "little")
        if 0 < n <= len(data) - 4:
            try:
                return 4 + n, json.loads(data[4 : 4 + n])
            except ValueError:
                pass
    return 0, {}


def _require_trt() -> None:
    """Fail with the install hint when TensorRT is missing. Callers then ``import tensorrt as
    trt`` themselves, so the type checker reads the calls against TensorRT's stubs."""
    require("tensorrt", "tensorrt", "TensorRT engines (on a Jetson it comes with JetPack)")


def _require_gpu() -> None:
    import torch

    if not torch.cuda.is_available():
        raise EdgepruneError("TensorRT engines need an NVIDIA GPU; PyTorch sees none on this machine")


def build_engine(
    onnx_path: Path, engine_path: Path, precision: str, metadata: dict[str, Any]
) -> dict[str, Any]:
    """Build a serialized engine from ``onnx_path`` with the TensorRT Python API (TensorRT 8.5+)."""
    _require_trt()
    _require_gpu()
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgepruneError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_MB << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # the Q/DQ nodes say which layers run in INT8
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgepruneError("TensorRT could not build the engine (its log above says why)")
    header = json.dumps(metadata).encode()
    with open(engine_path, "wb") as f:
        f.write(len(header).to_bytes(4, "little"))
        f.write(header)
        f.write(bytes(serialized))
    return {"tensorrt": trt.__version__}


class TensorRtSession(Session):
    """An engine on the GPU; each call copies inputs in and outputs out (host-to-host latency)."""

    def __init__(self, path: Path):
        import torch

        _require_trt()
        _require_gpu()
        import tensorrt as trt

        data = Path(path).read_bytes()
        offset, _ = engine_header(data)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(data[offset:])
        if self._engine is None:
            raise EdgepruneError(f"{path}: not an engine for this GPU and TensorRT {trt.__version__}")
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream()
        self._buffers: dict[str, torch.Tensor] = {}
        self.inputs, self.outputs = [], []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dims = self._engine.get_tensor_shape(name)
            shape = tuple(dims[d] for d in range(len(dims)))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            buf = torch.empty(shape, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype, device="cuda")
            self._buffers[name] = buf
            self._context.set_tensor_address(name, buf.data_ptr())
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(TensorSpec(name, shape, dtype))

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.cuda.stream(self._stream):
            for spec, array in zip(self.inputs, arrays, strict=True):
                self._buffers[spec.name].copy_(
                    torch.from_numpy(np.ascontiguousarray(array)), non_blocking=False
                )
            self._context.execute_async_v3(self._stream.cuda_stream)
        self._stream.synchronize()
        return [self._buffers[spec.name].cpu().numpy() for spec in self.outputs]


def _tensorrt_here() -> str | None:
    """None when engines can be built here, else why not."""
    try:
        _require_trt()
        _require_gpu()
    except EdgepruneError as e:  # MissingBackendError is one
        return str(e)
    return None


class TensorRtRuntime(Runtime):
    name = "tensorrt"
    suffix = ".engine"
    precisions = frozenset({"fp16", "int8", "fp32"})

    def _export(self, req: ExportRequest) -> ExportResult:
        module, example, target, quantization = req.module, req.example, req.target, req.quantization
        onnx_path, engine = req.out_dir / f"{req.stem}.onnx", req.out_dir / f"{req.stem}{self.suffix}"
        details: dict[str, Any] = {}
        if target.precision == "int8":
            assert quantization is not None  # checked by Runtime.export
            with tempfile.TemporaryDirectory() as tmp:
                fp32 = export_onnx(module, example, Path(tmp) / "fp32.onnx")
                details["quantization"] = quantize_int8(fp32, onnx_path, quantization, for_tensorrt=True)
        else:
            export_onnx(module, example, onnx_path)
        meta = {**req.metadata, "precision": target.precision}
        write_metadata(onnx_path, meta)
        command = build_command(onnx_path.name, engine.name, target.precision, WORKSPACE_MB)
        script = req.out_dir / f"{req.stem}.trtexec.sh"
        script.write_text(
            "#!/bin/sh\n# Build the TensorRT engine on the device (JetPack's trtexec is in /usr/src/tensorrt/bin).\n"
            f'cd "$(dirname "$0")" && {shlex.join(command)}\n'
        )
        script.chmod(0o755)
        details.update(onnx=str(onnx_path), trtexec=shlex.join(command), trtexec_script=str(script))

        why_not = _tensorrt_here()
        if why_not is None:
            details.update(build_engine(onnx_path, engine, target.precision, meta))
            session, artifact = self.load(engine), engine
        else:  # the ONNX is the artifact here; the device builds the engine from it
            details["engine"] = (
                f"not built on this machine ({why_not}); build it on the device with {script.name}"
            )
            details["parity_of"] = "the ONNX under onnxruntime (Q/DQ simulated on the CPU)"
            session, artifact = OrtSession(onnx_path, target.threads), onnx_path
        return self._result(req, artifact, details, session=session)

    def load(self, artifact: Path, *, threads: int | None = None) -> Session:
        return TensorRtSession(Path(artifact))

    def read_metadata(self, artifact: Path) -> dict[str, Any]:
        artifact = Path(artifact)
        if artifact.suffix == ".onnx":
            return read_metadata(artifact)
        return engine_header(artifact.read_bytes())[1]

    def environment(self) -> dict[str, Any]:
        _require_trt()
        import tensorrt as trt
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        return {"runtime": f"tensorrt {trt.__version__}", "device": gpu}
