"""Pipeline recipes: ``edgeprune run RECIPE.yaml`` runs the whole flow from one file.

Example recipe::

    model: runs/detect/train/weights/best.pt   # or a config such as yolov8n.yaml
    target: jetson-orin-nano-trt-fp16          # a shipped target name or a target YAML path
    data: datasets/parts/data.yaml             # optional: accuracy before/after and fine-tuning
    imgsz: 640                                 # optional: overrides the target's
    prune:
      ratio: 0.4
      importance: l2
      epochs: 20
    out: runs/edgeprune

Relative paths are resolved against the recipe file's folder.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from edgeprune.config import STRICT_CONFIG, choice, load_yaml_model
from edgeprune.errors import ConfigError, OptionError
from edgeprune.pipeline import PipelineSpec
from edgeprune.pruning.importance import ALLOCATIONS, IMPORTANCE
from edgeprune.pruning.options import FINETUNE_BATCH, PruneConfig


class PruneStep(BaseModel):
    model_config = STRICT_CONFIG

    ratio: float = Field(ge=0, lt=1, description="fraction of channels removed from every group")
    importance: str = Field(
        default=PruneConfig.importance,
        description="channel importance criterion (l1, l2, bn, taylor, lamp, random)",
    )
    allocation: str = Field(
        default=PruneConfig.allocation,
        description="ratio of every group (uniform) or of all channels (global)",
    )
    max_layer_ratio: float = Field(
        default=PruneConfig.max_layer_ratio,
        gt=0,
        lt=1,
        description="no layer loses more than this fraction of its channels",
    )
    native: bool = Field(
        default=PruneConfig.native,
        description="only widths the model's config can say, rewritten into it (Ultralytics retrains the result)",
    )
    keep_heads: bool = Field(
        default=PruneConfig.keep_heads,
        description="attention blocks keep all their heads (by default they lose the least important whole heads)",
    )
    epochs: int = Field(default=0, ge=0, description="fine-tuning epochs after pruning (needs data)")
    batch: int = Field(default=FINETUNE_BATCH, ge=1, description="batch size for fine-tuning and validation")

    @field_validator("importance")
    @classmethod
    def _importance(cls, value: str) -> str:
        return choice(value, IMPORTANCE.names())

    @field_validator("allocation")
    @classmethod
    def _allocation(cls, value: str) -> str:
        return choice(value, ALLOCATIONS)


class Recipe(BaseModel):
    model_config = STRICT_CONFIG

    model: str = Field(description="Ultralytics checkpoint (.pt) or model config (e.g. yolov8n.yaml)")
    target: str = Field(description="shipped target name or target YAML path")
    data: str | None = Field(default=None, description="Ultralytics data.yaml")
    calib: str | None = Field(
        default=None, description="INT8 calibration images: folder or data.yaml (default: data's train split)"
    )
    imgsz: int | None = Field(default=None, ge=32, description="image size (default: the target's)")
    threads: int | None = Field(default=None, ge=1, description="runtime threads (default: the target's)")
    prune: PruneStep = Field(description="how much to prune and fine-tune")
    budget_fraction: float | None = Field(
        default=None, gt=0, le=1, description="judge against this fraction of the baseline's latency instead"
    )
    profile_rounds: int = Field(default=3, ge=1, description="interleaved timing rounds")
    seed: int = Field(default=0, description="training seed")
    out: str = Field(default="edgeprune-run", description="output folder")


def load_recipe(path: str | Path) -> PipelineSpec:
    """Validate a recipe file and turn it into a ``PipelineSpec`` with paths resolved."""
    path = Path(path)
    recipe = load_yaml_model(
        path, Recipe, what="a mapping of recipe fields", example="model: ..., target: ..."
    )
    base = path.resolve().parent

    def local(value: str) -> str:
        candidate = base / value
        return str(candidate) if candidate.exists() or "/" in value or "\\" in value else value

    target = recipe.target
    if target.lower().endswith((".yaml", ".yml")) or "/" in target:
        target = str(base / target)
    try:
        prune = PruneConfig(
            ratio=recipe.prune.ratio,
            importance=recipe.prune.importance,
            allocation=recipe.prune.allocation,
            max_layer_ratio=recipe.prune.max_layer_ratio,
            native=recipe.prune.native,
            keep_heads=recipe.prune.keep_heads,
        )
    except OptionError as e:
        raise ConfigError(f"{path}: prune: {e.with_names(lambda name: name)}") from None
    return PipelineSpec(
        model=local(recipe.model),
        target=target,
        data=str(base / recipe.data) if recipe.data else None,
        calib=str(base / recipe.calib) if recipe.calib else None,
        imgsz=recipe.imgsz,
        threads=recipe.threads,
        prune=prune,
        epochs=recipe.prune.epochs,
        batch=recipe.prune.batch,
        seed=recipe.seed,
        budget_fraction=recipe.budget_fraction,
        profile_rounds=recipe.profile_rounds,
        out=base / recipe.out,
    )
