"""The interface every runtime adapter implements.

A runtime adapter turns a traceable PyTorch module into the artifact its runtime executes
(``export``), loads that artifact for inference (``load``) and describes itself for the
environment record (``environment``). Backend quirks stay inside the adapter's own module.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch

    from edgeprune.calibration import CalibrationData, CalibrationRecipe
    from edgeprune.targets import Target


@dataclass(frozen=True)
class Quantization:
    """What an INT8 export needs: the recipe, the calibration images and the node-name patterns
    (from the model adapter's ``keep_float`` parts and the recipe's own) that stay in float."""

    recipe: CalibrationRecipe
    data: CalibrationData
    float_patterns: tuple[str, ...] = ()

    def keeps_float(self, node_name: str) -> bool:
        import re

        return any(re.search(p, node_name) for p in self.float_patterns)


@dataclass(frozen=True)
class TensorSpec:
    """Name, static shape and numpy dtype of one model input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


class Session(ABC):
    """A loaded artifact, ready to run: ``session(x) -> list of output arrays``."""

    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]

    @abstractmethod
    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Run one inference on numpy inputs (NCHW float32 for image models)."""

    def random_inputs(self, seed: int = 0) -> list[np.ndarray]:
        """Inputs of the right shape and dtype for timing (values in [0, 1) like a normalized image)."""
        rng = np.random.default_rng(seed)
        return [rng.random(spec.shape, dtype=np.float32).astype(spec.dtype) for spec in self.inputs]

    def runner(self, seed: int = 0) -> Callable[[], list[np.ndarray]]:
        """A call that runs one inference on fixed ``random_inputs``: what timing repeats."""
        inputs = self.random_inputs(seed)
        return lambda: self(*inputs)


@dataclass(frozen=True)
class ExportRequest:
    """One export: the module and its example input, where, for which target, with what."""

    module: torch.nn.Module
    example: torch.Tensor
    out_dir: Path
    target: Target
    stem: str
    quantization: Quantization | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    compare: Callable[[list[np.ndarray], list[np.ndarray]], dict[str, Any]] | None = None

    def parity(self, session: Session) -> dict[str, Any]:
        """``session`` against PyTorch on a real calibration image if there is one, else the example:
        the whole outputs (``compare_outputs``) and what the model adapter reads in them
        (``compare``: a detector's boxes, scores and decoded detections)."""
        x = parity_input(self.example, self.quantization)
        reference, candidate = torch_outputs(self.module, x), session(x.cpu().numpy())
        parity: dict[str, Any] = compare_outputs(reference, candidate)
        if self.compare is not None:
            parity.update(self.compare(reference, candidate))
        return parity


@dataclass
class ExportResult:
    """What an export produced: the artifact and facts measured while making it."""

    artifact: Path
    runtime: str
    precision: str
    size_mb: float
    parity: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Runtime(ABC):
    """One runtime (ONNX Runtime, OpenVINO, TFLite, TensorRT) behind one interface."""

    name: ClassVar[str]
    suffix: ClassVar[str]
    precisions: ClassVar[frozenset[str]]
    normalized_boxes: ClassVar[bool] = False  # export detectors with boxes divided by the image size
    node_naming: ClassVar[str] = "onnx"  # how exported node names look (Detector.float_node_patterns)
    folder_artifacts: ClassVar[bool] = False  # an artifact may be given as its folder (OpenVINO's IR)

    def export(
        self,
        module: torch.nn.Module,
        example: torch.Tensor,
        out_dir: Path,
        *,
        target: Target,
        stem: str = "model",
        quantization: Quantization | None = None,
        metadata: dict[str, Any] | None = None,
        compare: Callable[[list[np.ndarray], list[np.ndarray]], dict[str, Any]] | None = None,
    ) -> ExportResult:
        """Export ``module`` for ``target`` into ``out_dir`` and check the artifact against PyTorch.

        INT8 needs ``quantization`` (calibration images and a recipe written for this runtime).
        ``metadata`` is stored in or beside the artifact (Ultralytics reads it to run the file).
        Parity is measured on the first calibration image when there is one (a real image gives
        real detections to compare), otherwise on ``example``; ``compare(reference, artifact
        outputs)`` adds the model adapter's own reading of the two (``Detector.output_parity``).
        """
        from edgeprune.errors import EdgepruneError, OptionError

        if target.precision not in self.precisions:
            raise EdgepruneError(
                f"runtime {self.name!r} cannot export precision {target.precision!r}; "
                f"supported: {', '.join(sorted(self.precisions))}"
            )
        if target.precision == "int8":
            if quantization is None:
                raise OptionError(
                    f"INT8 for {target.name} needs calibration images: `calib` (an image folder or a data.yaml)"
                )
            if quantization.recipe.runtime != self.name:
                raise EdgepruneError(
                    f"calibration recipe {quantization.recipe.name!r} is written for "
                    f"{quantization.recipe.runtime}, not {self.name}"
                )
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        # Written into a staging folder, then moved into place whole: a run killed mid-export leaves
        # the previous artifact (and a hidden staging folder), never a half-written one.
        for stale in out_dir.glob(
            f".{stem}.staging-*"
        ):  # of a killed run; the output folder is ours (locked)
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{stem}.staging-", dir=out_dir))
        try:
            result = self._export(
                ExportRequest(module, example, staging, target, stem, quantization, metadata or {}, compare)
            )
            for entry in sorted(staging.iterdir()):
                _publish(entry, out_dir / entry.name)
            return _relocated(result, staging, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @abstractmethod
    def _export(self, req: ExportRequest) -> ExportResult: ...

    def _result(
        self,
        req: ExportRequest,
        artifact: Path,
        details: dict[str, Any],
        *,
        session: Session | None = None,
        size_mb: float | None = None,
    ) -> ExportResult:
        """What an export made: parity against PyTorch through ``session`` (default: ``artifact``
        loaded with the target's threads), the size on disk and the calibration that was used."""
        if req.quantization is not None:
            details.setdefault("calibration", req.quantization.data.describe())
            details.setdefault("recipe", req.quantization.recipe.name)
        session = session or self.load(artifact, threads=req.target.threads)
        size = size_mb if size_mb is not None else artifact.stat().st_size / 2**20
        return ExportResult(artifact, self.name, req.target.precision, size, req.parity(session), details)

    @abstractmethod
    def load(self, artifact: Path, *, threads: int | None = None) -> Session:
        """Load ``artifact`` for inference with ``threads`` intra-op threads (None = runtime default)."""

    def open(self, artifact: str | Path, *, threads: int | None = None) -> Session:
        """``load`` for a file a user gave: anything the runtime cannot read (a text file, a truncated
        or foreign model, an IR without its weights) is an ``EdgepruneError`` naming the file. The
        runtimes raise their own types for it (protobuf, flatbuffer and C++ errors), hence the broad catch."""
        from edgeprune.errors import EdgepruneError

        artifact = Path(artifact)
        if not (artifact.is_file() or (self.folder_artifacts and artifact.is_dir())):
            what = "a folder" if artifact.is_dir() else "not found"
            raise EdgepruneError(f"{artifact}: {what}; give the {self.suffix} file `edgeprune export` wrote")
        try:
            return self.load(artifact, threads=threads)
        except EdgepruneError:
            raise
        except Exception as e:  # noqa: BLE001 (see the docstring)
            detail = " ".join(str(e).split())[:240]
            raise EdgepruneError(
                f"{artifact} is not a model {self.name} can load ({type(e).__name__}: {detail}); give the "
                f"{self.suffix} file `edgeprune export` wrote for a target whose runtime is {self.name}"
            ) from None

    @abstractmethod
    def environment(self) -> dict[str, Any]:
        """Runtime name, version and execution provider/device, for the report."""

    def read_metadata(self, artifact: Path) -> dict[str, Any]:
        """What the export stored in or beside ``artifact`` (Ultralytics' keys: task, names,
        imgsz, end2end, ...); empty when there is none."""
        return {}


def _publish(entry: Path, final: Path) -> None:
    from edgeprune.files import fsync_file, replace_folder

    if entry.is_dir():
        for f in entry.rglob("*"):
            if f.is_file():
                fsync_file(f)
        replace_folder(entry, final)
    else:
        fsync_file(entry)
        os.replace(entry, final)


def _relocated(result: ExportResult, staging: Path, out_dir: Path) -> ExportResult:
    """``result`` with the staging folder's paths replaced by the output folder's."""
    old, new = str(staging), str(out_dir)

    def move(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(old):
            return new + value[len(old) :]
        if isinstance(value, Path) and str(value).startswith(old):
            return Path(new + str(value)[len(old) :])
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        return value

    result.artifact = move(result.artifact)
    result.details = move(result.details)
    result.parity = move(result.parity)
    return result


def parity_input(example: torch.Tensor, quantization: Quantization | None) -> torch.Tensor:
    """A real calibration image when there is one (shaped like ``example``), else ``example``."""
    import torch

    if quantization is None or len(quantization.data) == 0:
        return example
    image = torch.from_numpy(next(quantization.data.arrays()))
    return image.expand_as(example).contiguous() if image.shape[1:] == example.shape[1:] else example


def torch_outputs(module: torch.nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """``module(x)`` as a list of numpy arrays (a tuple or list of outputs is flattened one level)."""
    import torch

    with torch.no_grad():
        out = module(x)
    outs = out if isinstance(out, (tuple, list)) else [out]
    return [o.detach().cpu().float().numpy() for o in outs]


def compare_outputs(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> dict[str, float]:
    """Parity of an artifact against PyTorch: worst absolute error and the lowest cosine similarity."""
    if len(reference) != len(candidate):
        raise ValueError(f"output count differs: {len(reference)} vs {len(candidate)}")
    max_abs, cosine = 0.0, 1.0
    for ref, got in zip(reference, candidate, strict=True):
        ref = np.asarray(ref, dtype=np.float64).ravel()
        got = np.asarray(got, dtype=np.float64).ravel()
        if ref.shape != got.shape:
            raise ValueError(f"output shape differs: {ref.shape} vs {got.shape}")
        max_abs = max(max_abs, float(np.max(np.abs(ref - got))) if ref.size else 0.0)
        cosine = min(cosine, cosine_similarity(ref, got))
    return {"max_abs_err": max_abs, "cosine": cosine}


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two arrays read flat; 1.0 or 0.0 when either is all zeros (equal or not)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom > 0 else float(np.allclose(a, b))
