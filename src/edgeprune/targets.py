"""Targets: a device, the runtime it runs and the latency budget a model must meet there.

A target is data: one YAML file per target in the shipped ``targets/`` folder (found with
:func:`edgeprune.resources.data_dir`), or any ``.yaml`` file a user writes. Files are validated
into frozen, typed :class:`Target` objects; unknown keys are rejected. Every problem in a file
raises :class:`~edgeprune.errors.ConfigError` with one line per problem that starts with the
file path and the field path, then says what was expected and what was found::

    targets/x.yaml: budget.latency_ms: expected a number greater than 0, got -3 (line 9)

Example:
    >>> from edgeprune.targets import load_target
    >>> target = load_target("jetson-orin-nano-trt-fp16")
    >>> target.budget.latency_ms, target.budget.percentile
    (8.0, 'p90')
    >>> bigger = target.with_overrides(imgsz=320, budget={"latency_ms": 5.0})
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, ValidationInfo, field_validator

from edgeprune.config import (
    STRICT_CONFIG,
    Problem,
    choice,
    load_yaml_model,
    non_blank,
    show_value,
    validate_model,
)
from edgeprune.errors import ConfigError
from edgeprune.profiling.timing import Percentile
from edgeprune.resources import data_dir

__all__ = [
    "Budget",
    "Device",
    "DeviceKind",
    "Percentile",
    "Precision",
    "Profiling",
    "Target",
    "list_targets",
    "load_target",
    "target_names",
    "validate_target_file",
]

DeviceKind = Literal["x86-cpu", "arm-cpu", "jetson", "other"]
Precision = Literal["fp32", "fp16", "int8"]

_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_SUFFIXES = (".yaml", ".yml")
_IMGSZ_STRIDE = 32


class Device(BaseModel):
    """The hardware a target runs on.

    Attributes:
        kind: Device family: ``x86-cpu``, ``arm-cpu``, ``jetson`` or ``other``.
        name: Human-readable device name, e.g. ``"Jetson Orin Nano 8GB"``.
    """

    model_config = STRICT_CONFIG

    kind: DeviceKind = Field(description="device family (x86-cpu, arm-cpu, jetson or other)")
    name: str = Field(description='device name, e.g. "Jetson Orin Nano 8GB"')

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return non_blank(value)


class Budget(BaseModel):
    """What the model must achieve on the device.

    Attributes:
        latency_ms: Latency limit of one inference, in milliseconds.
        percentile: Which statistic of the measured latencies is compared with
            ``latency_ms``: ``p50``, ``p90``, ``p99`` or ``mean``.
        memory_mb: Optional limit on the memory the runtime uses, in MiB; ``None`` for none.
        scope: What the limit covers: ``engine`` (one inference of the artifact) or
            ``end_to_end`` (letterbox, inference, decode and NMS per frame; ``edgeprune profile``
            then times every stage, see ``profiling/end_to_end.py``).
    """

    model_config = STRICT_CONFIG

    latency_ms: float = Field(gt=0, allow_inf_nan=False, description="latency limit in milliseconds")
    percentile: Percentile = Field(description="statistic compared with the limit (p50, p90, p99 or mean)")
    scope: Literal["engine", "end_to_end"] = Field(
        default="engine",
        description="what the limit covers: engine (one inference) or end_to_end (per frame)",
    )
    memory_mb: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="optional memory limit in MiB"
    )


class Profiling(BaseModel):
    """How latency is measured on the device.

    A measurement first runs at least ``warmup`` untimed inferences for at least ``warmup_s``
    seconds, then keeps timing until it has done at least ``iterations`` runs *and* spent at
    least ``min_time_s`` seconds.

    Attributes:
        warmup: Untimed runs before measuring (engine autotuning, caches, clocks).
        warmup_s: Minimum duration of the warm-up, in seconds (clocks and caches settle over
            time, not only over runs; TensorRT's ``trtexec --warmUp`` is this, in ms).
        iterations: Minimum number of timed runs.
        min_time_s: Minimum total time of the timed runs, in seconds.
    """

    model_config = STRICT_CONFIG

    warmup: int = Field(default=10, ge=0, description="untimed warm-up runs")
    warmup_s: float = Field(
        default=0.5, ge=0, allow_inf_nan=False, description="minimum warm-up duration in seconds"
    )
    iterations: int = Field(default=100, ge=1, description="minimum number of timed runs")
    min_time_s: float = Field(
        default=2.0, ge=0, allow_inf_nan=False, description="minimum timed duration in seconds"
    )


class Target(BaseModel):
    """A device + runtime + precision + input size, and the budget to meet there.

    Instances are immutable; derive a changed copy with :meth:`with_overrides`.

    Attributes:
        name: Slug naming the target (lowercase letters, digits, ``-``); for a shipped
            target it equals the file stem.
        description: One line saying what the target is for.
        device: The hardware (:class:`Device`).
        runtime: Runtime adapter name, one of ``edgeprune.runtimes.RUNTIMES.names()``.
        precision: Numeric precision of the exported model: ``fp32``, ``fp16`` or ``int8``.
        imgsz: Square input size in pixels (a multiple of 32).
        batch: Images per inference.
        threads: CPU threads the runtime may use; ``None`` keeps the runtime default.
        round_to: Pruned channel counts are rounded to a multiple of this (SIMD lanes or
            tensor-core alignment of the device).
        budget: The :class:`Budget` to meet.
        calibration: Name of the calibration recipe used for int8 quantization; required
            when ``precision`` is ``int8`` and ignored otherwise.
        profiling: How latency is measured (:class:`Profiling`).
    """

    model_config = STRICT_CONFIG

    name: str = Field(description="target name (lowercase letters, digits and '-')")
    description: str = Field(default="", description="one line saying what the target is for")
    device: Device = Field(description="mapping with kind and name")
    runtime: str = Field(description="runtime adapter name")
    precision: Precision = Field(description="fp32, fp16 or int8")
    imgsz: int = Field(description="square input size in pixels, a multiple of 32")
    batch: int = Field(default=1, ge=1, description="images per inference")
    threads: int | None = Field(default=None, ge=1, description="CPU threads, or null for the default")
    round_to: int = Field(ge=1, description="channel multiple used by the pruner")
    budget: Budget = Field(description="mapping with latency_ms, percentile and optional memory_mb")
    calibration: str | None = Field(
        default=None, validate_default=True, description="calibration recipe name (required for int8)"
    )
    profiling: Profiling = Field(
        default_factory=Profiling, description="warmup, warmup_s, iterations, min_time_s"
    )

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _SLUG.fullmatch(value):
            raise ValueError(
                "expected a slug of lowercase letters, digits and single '-' "
                f"(e.g. 'cpu-ort-int8'), got {show_value(value)}"
            )
        return value

    @field_validator("runtime")
    @classmethod
    def _check_runtime(cls, value: str) -> str:
        from edgeprune.runtimes import RUNTIMES  # lazy: registering runtimes imports no backend

        return choice(value, RUNTIMES.names())

    @field_validator("imgsz")
    @classmethod
    def _check_imgsz(cls, value: int) -> int:
        if value < _IMGSZ_STRIDE or value % _IMGSZ_STRIDE:
            raise ValueError(
                f"expected a multiple of {_IMGSZ_STRIDE} that is at least {_IMGSZ_STRIDE} "
                f"(e.g. 320 or 640), got {show_value(value)}"
            )
        return value

    @field_validator("calibration")
    @classmethod
    def _check_calibration(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"expected a calibration recipe name or null, got {show_value(value)}")
        if value is None and info.data.get("precision") == "int8":
            example = f"yolo-{info.data.get('runtime', 'onnxruntime')}-int8"
            raise ValueError(
                f"expected a calibration recipe name because precision is int8 (e.g. {example!r}), got null"
            )
        return value

    @property
    def source(self) -> Path | None:
        """The YAML file this target was loaded from, or ``None`` if built in code."""
        return self._source

    def with_overrides(self, **changes: Any) -> Target:
        """Return a re-validated copy with some fields changed.

        Nested sections are merged, so ``budget={"latency_ms": 5.0}`` keeps the percentile.
        ``None`` is a value (e.g. ``threads=None`` means the runtime default), so callers
        should leave out options the user did not give.

        Args:
            **changes: Field values to replace, e.g. ``imgsz=320`` or
                ``budget={"latency_ms": 5.0}``.

        Returns:
            A new :class:`Target`; ``self`` is unchanged.

        Raises:
            ConfigError: If a changed value (or the combination) is invalid, or a field is unknown.
        """
        data = self.model_dump()
        for key, value in changes.items():
            if isinstance(value, BaseModel):
                value = value.model_dump()
            current = data.get(key)
            if isinstance(value, Mapping) and isinstance(current, dict):
                value = {**current, **value}
            data[key] = value
        label = f"target {self.name!r} with overrides"
        target = validate_model(Target, data, label=label)
        target._source = self._source
        return target

    def summary(self) -> str:
        """Return a readable multi-line description (used by ``edgeprune targets show``)."""
        threads = "runtime default" if self.threads is None else str(self.threads)
        if self.calibration is not None:
            calibration = f"recipe {self.calibration}"
            if self.precision != "int8":
                calibration += f" (unused at {self.precision})"
        else:
            calibration = "none (only int8 needs a calibration recipe)"
        memory = "no limit" if self.budget.memory_mb is None else f"<= {self.budget.memory_mb:g} MB"
        prof = self.profiling
        rows = [
            ("device", f"{self.device.kind}: {self.device.name}"),
            ("runtime", f"{self.runtime}, {self.precision}"),
            ("input", f"{self.imgsz} x {self.imgsz} px, batch {self.batch}"),
            ("threads", threads),
            ("round_to", f"pruned channel counts rounded to multiples of {self.round_to}"),
            ("budget", f"{self.budget.percentile} latency <= {self.budget.latency_ms:g} ms"),
            ("memory", memory),
            ("calibration", calibration),
            (
                "profiling",
                f"{prof.warmup} warm-up runs over at least {prof.warmup_s:g} s, then at least "
                f"{prof.iterations} timed runs "
                f"and at least {prof.min_time_s:g} s",
            ),
        ]
        if self._source is not None:
            rows.append(("file", str(self._source)))
        head = f"{self.name}: {self.description}" if self.description else self.name
        width = max(len(key) for key, _ in rows)
        return "\n".join([head, *(f"  {key:<{width}}  {value}" for key, value in rows)])


# --------------------------------------------------------------------------------------------
# Loading


def target_names() -> list[str]:
    """Return the names of the shipped targets (their file stems), sorted."""
    folder = data_dir("targets")
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml") if p.is_file())


def list_targets() -> list[Target]:
    """Load every shipped target.

    Returns:
        The targets, sorted by name.

    Raises:
        ConfigError: If any shipped file is invalid (the message names that file).
    """
    folder = data_dir("targets")
    return sorted(
        (validate_target_file(folder / f"{name}.yaml") for name in target_names()),
        key=lambda t: t.name,
    )


def load_target(name_or_path: str | Path | Target) -> Target:
    """Load a target by shipped name or from a YAML file.

    ``name_or_path`` is read as a file when it is a :class:`~pathlib.Path`, names an existing
    file, contains a path separator or ends in ``.yaml``/``.yml``; otherwise it is the name of
    a shipped target (``targets/NAME.yaml``). A :class:`Target` is returned unchanged.

    Args:
        name_or_path: A shipped target name such as ``"cpu-ort-int8"`` or a path to a file.

    Returns:
        The validated target.

    Raises:
        ConfigError: If the name is unknown (the message lists the known names), the file is
            missing, or the file is invalid.
    """
    if isinstance(name_or_path, Target):
        return name_or_path
    if isinstance(name_or_path, Path) or _looks_like_path(name_or_path):
        return validate_target_file(name_or_path)
    name = str(name_or_path)
    known = target_names()
    if name not in known:
        folder = data_dir("targets")
        if not known:
            raise ConfigError(f"unknown target {name!r}: no target files found in {folder}")
        hint = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(
            f"unknown target {name!r}.{did_you_mean} Known targets: {', '.join(known)} "
            f"(or pass the path of a .yaml file)"
        )
    return validate_target_file(data_dir("targets") / f"{name}.yaml")


def validate_target_file(path: str | Path) -> Target:
    """Read and validate one target YAML file.

    A file in the shipped targets folder must have ``name`` equal to its file stem.

    Args:
        path: The YAML file.

    Returns:
        The validated target, remembering its file in :attr:`Target.source`.

    Raises:
        ConfigError: One line per problem, each starting with the path and the field.
    """
    path = Path(path)
    if not path.exists() and path.suffix in _SUFFIXES and path.parent == Path():
        if path.stem in target_names():
            raise ConfigError(f"{path}: no such file (to use the shipped target, pass its name: {path.stem})")

    def check(target: Target) -> Iterator[Problem]:
        if _is_shipped(path) and target.name != path.stem:
            yield Problem(
                ("name",),
                f"expected {path.stem!r} (a shipped target's name equals its file name), "
                f"got {show_value(target.name)}",
            )

    target = load_yaml_model(
        path, Target, what="a mapping of target fields", example="name: ..., runtime: ...", check=check
    )
    target._source = path
    return target


# --------------------------------------------------------------------------------------------
# Helpers


def _looks_like_path(value: str) -> bool:
    return value.lower().endswith(_SUFFIXES) or "/" in value or "\\" in value or Path(value).is_file()


def _is_shipped(path: Path) -> bool:
    try:
        return path.resolve().parent == data_dir("targets").resolve()
    except OSError:
        return False
