"""Calibration recipes: how INT8 quantization is done for one model family x runtime, as data.

A recipe is a YAML file in the shipped ``calibration/`` folder (or any path), named by the
``calibration:`` field of INT8 targets. It is validated like a target: unknown keys, wrong types
and out-of-range values fail with the file, the field and the line.

Example ``calibration/yolo-onnxruntime-int8.yaml``::

    name: yolo-onnxruntime-int8
    runtime: onnxruntime
    method: minmax            # minmax | entropy | percentile
    images: 128               # calibration images drawn (reproducibly) from the source
    keep_float: [box_decode]  # model parts left in float: box_decode, dfl (adapter-defined)
    per_channel: true
    activations: auto         # int8 | uint8 | auto (chosen from the CPU, see the runtime adapter)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from edgeprune.config import STRICT_CONFIG, Problem, choice, load_yaml_model
from edgeprune.errors import ConfigError
from edgeprune.resources import data_dir

Method = Literal["minmax", "entropy", "percentile"]
QType = Literal["auto", "int8", "uint8"]
FLOAT_PARTS = ("box_decode", "dfl")  # what a model adapter can name; see Detector.float_node_patterns


class CalibrationRecipe(BaseModel):
    """One calibration/quantization recipe.

    Attributes:
        name: The recipe's name; equals the file stem for shipped recipes.
        runtime: The runtime adapter it is written for.
        method: How activation ranges are chosen from the calibration images.
        percentile: For ``percentile``: the percentile of absolute activations kept.
        images: How many calibration images are drawn from the source.
        batch: Calibration batch size (1 keeps memory small; TensorRT calibrators may use more).
        seed: Seed of the image draw.
        split: The data.yaml split calibration images come from (``train`` by default, so the
            validation images that measure the artifact's mAP were never seen by calibration).
        keep_float: Parts of the model left in float, by the names the model adapter knows
            (``box_decode``: the head's decode after the prediction convs; ``dfl``).
        keep_float_nodes: Regular expressions over node names of the exported graph, also left
            in float (for what ``keep_float`` cannot name).
        per_channel: Per-channel weight scales.
        activations, weights: Quantized types; ``auto`` lets the runtime adapter choose from the CPU.
        reduce_range: 7-bit weights, which avoids the u8s8 saturation of CPUs without VNNI;
            ``auto`` lets the adapter decide from the CPU.
        preset: For OpenVINO/NNCF: ``performance`` (symmetric) or ``mixed`` (asymmetric activations).
        description: Why the recipe is the way it is.
    """

    model_config = STRICT_CONFIG

    name: str = Field(description="recipe name (the file stem)")
    runtime: str = Field(description="runtime adapter (a name in edgeprune.runtimes.RUNTIMES)")
    method: Method = Field(default="minmax", description="minmax, entropy or percentile")
    percentile: float = Field(default=99.999, gt=90, le=100, description="for method percentile")
    images: int = Field(default=128, ge=1, le=100_000, description="calibration images drawn from the source")
    batch: int = Field(default=1, ge=1, le=256, description="calibration batch size")
    seed: int = Field(default=0, description="seed of the image draw")
    split: str = Field(default="train", description="data.yaml split the images come from")
    keep_float: list[str] = Field(
        default_factory=list, description="model parts left in float (box_decode, dfl)"
    )
    keep_float_nodes: list[str] = Field(default_factory=list, description="regexes over exported node names")
    per_channel: bool = Field(default=True, description="per-channel weight scales")
    activations: QType = Field(default="auto", description="activation type: auto, int8 or uint8")
    weights: QType = Field(default="auto", description="weight type: auto, int8 or uint8")
    reduce_range: Literal["auto"] | bool = Field(
        default="auto", description="7-bit weights: auto, true, false"
    )
    preset: Literal["performance", "mixed"] = Field(default="mixed", description="NNCF preset (OpenVINO)")
    description: str = Field(default="", description="why the recipe is what it is")

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, value: str) -> str:
        from edgeprune.runtimes import RUNTIMES  # lazy: registering runtimes imports no backend

        return choice(value, RUNTIMES.names())

    @field_validator("keep_float")
    @classmethod
    def _parts(cls, value: list[str]) -> list[str]:
        return [choice(part, FLOAT_PARTS) for part in value]

    @field_validator("keep_float_nodes")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"expected regular expressions, {pattern!r} is not one ({e})") from None
        return value


def recipe_names() -> list[str]:
    folder = data_dir("calibration")
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _check_stem(path: Path):
    def check(recipe: CalibrationRecipe):
        if path.parent == data_dir("calibration") and recipe.name != path.stem:
            yield Problem(("name",), f"expected the file name {path.stem!r}, got {recipe.name!r}")

    return check


def load_recipe(name_or_path: str | Path) -> CalibrationRecipe:
    """A shipped recipe by name, or a recipe file by path."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(name_or_path)
    else:
        known = recipe_names()
        if text not in known:
            raise ConfigError(f"unknown calibration recipe {text!r}; known: {', '.join(known) or 'none'}")
        path = data_dir("calibration") / f"{text}.yaml"
    return load_yaml_model(
        path, CalibrationRecipe, what="a mapping of recipe fields", example="name: ..., runtime: ...",
        check=_check_stem(path),
    )  # fmt: skip
