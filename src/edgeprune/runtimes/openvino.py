"""OpenVINO: FP32/FP16 IR from the ONNX export, INT8 through NNCF post-training quantization.

The artifact is ``OUT/STEM_openvino_model/STEM.xml`` (with ``.bin`` and ``metadata.yaml``),
the layout Ultralytics reads, so ``YOLO(".../STEM_openvino_model")`` predicts and validates it.
Telemetry is off (see ``edgeprune._optional.openvino``). On the CPU, inference runs in FP32
precision for FP32 and INT8 IRs (OpenVINO would otherwise pick bf16 on CPUs that have it, which
changes the numbers the parity check and the budget see).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgeprune import _optional
from edgeprune.runtimes.base import (
    ExportRequest,
    ExportResult,
    Quantization,
    Runtime,
    Session,
    TensorSpec,
)
from edgeprune.runtimes.onnxruntime import export_onnx


def _dir_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 2**20


def quantize_nncf(model: Any, quantization: Quantization) -> tuple[Any, dict[str, Any]]:
    """INT8 with NNCF: the recipe's preset, its calibration images, its float parts ignored."""
    nncf = _optional.nncf()
    nncf.set_log_level(logging.WARNING)  # one INFO line per node otherwise
    recipe = quantization.recipe
    ignored = sorted(
        {op.get_friendly_name() for op in model.get_ops() if quantization.keeps_float(op.get_friendly_name())}
    )
    preset = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    name = model.inputs[0].get_any_name()
    dataset = nncf.Dataset(list(quantization.data.batches(recipe.batch)), lambda x: {name: x})
    advanced = None
    if recipe.method != "minmax":  # NNCF's default ranges are min/max of the calibration activations
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        ranges = RangeEstimatorParametersSet.MEAN_QUANTILE
        advanced = AdvancedQuantizationParameters(activations_range_estimator_params=ranges)
    quantized = nncf.quantize(
        model,
        dataset,
        preset=preset[recipe.preset],
        subset_size=len(quantization.data),
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False) if ignored else None,
        advanced_parameters=advanced,
    )
    info = {"preset": recipe.preset, "method": recipe.method, "float_nodes": len(ignored)}
    return quantized, info


class OpenVinoSession(Session):
    def __init__(self, path: Path, threads: int | None, precision: str | None = None):
        ov = _optional.openvino()
        core = ov.Core()
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if precision != "fp16":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        model = core.read_model(str(path))
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self.inputs = [self._spec(p) for p in self._compiled.inputs]
        self.outputs = [self._spec(p) for p in self._compiled.outputs]

    @staticmethod
    def _spec(port: Any) -> TensorSpec:
        shape = tuple(int(d) for d in port.get_partial_shape().to_shape())
        dtype = np.dtype(port.get_element_type().to_dtype())
        return TensorSpec(port.get_any_name(), shape, dtype)

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        results = self._request.infer(list(arrays))
        return [np.asarray(results[port]) for port in self._compiled.outputs]


def _metadata(xml: Path) -> dict[str, Any]:
    meta = xml.parent / "metadata.yaml"
    return (yaml.safe_load(meta.read_text()) or {}) if meta.is_file() else {}


def _precision_of(xml: Path) -> str | None:
    return _metadata(xml).get("precision")


class OpenVinoRuntime(Runtime):
    folder_artifacts = True  # the folder export writes (model.xml, model.bin, metadata.yaml)
    name = "openvino"
    suffix = ".xml"
    precisions = frozenset({"fp32", "fp16", "int8"})

    def _export(self, req: ExportRequest) -> ExportResult:
        module, example, target, quantization = req.module, req.example, req.target, req.quantization
        ov = _optional.openvino()
        folder = req.out_dir / f"{req.stem}_openvino_model"
        folder.mkdir(parents=True, exist_ok=True)
        xml = folder / f"{req.stem}.xml"
        details: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as tmp:
            model = ov.convert_model(str(export_onnx(module, example, Path(tmp) / "model.onnx")))
        if target.precision == "int8":
            assert quantization is not None  # checked by Runtime.export
            model, details["quantization"] = quantize_nncf(model, quantization)
        ov.save_model(model, str(xml), compress_to_fp16=target.precision == "fp16")
        (folder / "metadata.yaml").write_text(
            yaml.safe_dump({**req.metadata, "precision": target.precision}, sort_keys=False)
        )
        return self._result(req, xml, details, size_mb=_dir_size_mb(folder))

    def load(self, artifact: Path, *, threads: int | None = None) -> Session:
        artifact = Path(artifact)
        if artifact.is_dir():
            artifact = next(artifact.glob("*.xml"))
        if not artifact.with_suffix(".bin").is_file():
            from edgeprune.errors import EdgepruneError

            raise EdgepruneError(
                f"{artifact}: its weights {artifact.with_suffix('.bin')} are missing; an OpenVINO IR is the .xml "
                "and the .bin beside it"
            )
        return OpenVinoSession(artifact, threads, _precision_of(artifact))

    def read_metadata(self, artifact: Path) -> dict[str, Any]:
        artifact = Path(artifact)
        return _metadata(next(artifact.glob("*.xml")) if artifact.is_dir() else artifact)

    def environment(self) -> dict[str, Any]:
        ov = _optional.openvino()
        return {"runtime": f"openvino {ov.get_version()}", "device": "CPU"}
