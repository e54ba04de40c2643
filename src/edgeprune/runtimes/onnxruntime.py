"""ONNX Runtime: export with torch.onnx, run on the CPU execution provider."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeprune.runtimes.base import ExportResult, Runtime, Session, TensorSpec, compare_outputs

if TYPE_CHECKING:
    import torch

    from edgeprune.targets import Target

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}
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


def _as_numpy_outputs(outputs: Any) -> list[np.ndarray]:
    if isinstance(outputs, (tuple, list)):
        return [o.detach().cpu().numpy() for o in outputs]
    return [outputs.detach().cpu().numpy()]


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
    extra = None
    suffix = ".onnx"
    precisions = frozenset({"fp32"})

    def _export(
        self, module: torch.nn.Module, example: torch.Tensor, out_dir: Path, *, target: Target, stem: str
    ) -> ExportResult:
        import torch

        path = export_onnx(module, example, out_dir / f"{stem}{self.suffix}")
        with torch.no_grad():
            reference = _as_numpy_outputs(module(example))
        session = self.load(path, threads=target.threads)
        parity = compare_outputs(reference, session(example.cpu().numpy()))
        return ExportResult(
            artifact=path,
            runtime=self.name,
            precision=target.precision,
            size_mb=path.stat().st_size / 2**20,
            parity=parity,
            details={"opset": OPSET},
        )

    def load(self, artifact: Path, *, threads: int | None = None) -> Session:
        return OrtSession(Path(artifact), threads)

    def environment(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"runtime": f"onnxruntime {ort.__version__}", "provider": "CPUExecutionProvider"}
