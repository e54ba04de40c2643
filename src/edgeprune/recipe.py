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

or, for a latency budget measured on the target's runtime and precision, INT8 held to a measured
accuracy::

    search:
      speedup: 2          # or budget_ms: 8 (default: the target's budget)
      epochs: 12
      distill: true       # teacher: a larger or longer-trained checkpoint
    export:
      max_drop: 1.0       # INT8: mAP50-95 points the artifact may lose (accuracy_control.py)

Relative paths are resolved against the recipe file's folder.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from edgeprune.config import STRICT_CONFIG, choice, load_yaml_model
from edgeprune.errors import ConfigError, OptionError
from edgeprune.pipeline import PipelineSpec
from edgeprune.pruning.importance import ALLOCATIONS, IMPORTANCE
from edgeprune.pruning.options import FINETUNE_BATCH, PruneConfig, SearchConfig


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


class SearchStep(BaseModel):
    """A budget search instead of a fixed ratio (``edgeprune prune --speedup/--budget-ms``)."""

    model_config = STRICT_CONFIG

    budget_ms: float | None = Field(
        default=None, gt=0, description="latency budget in ms (default: the target's)"
    )
    speedup: float | None = Field(default=None, gt=1, description="or: times faster than the unpruned model")
    steps: int = Field(default=SearchConfig.steps, ge=1, description="pruning steps to the budget")
    step_epochs: int = Field(default=0, ge=0, description="fine-tuning epochs after each step but the last")
    epochs: int = Field(default=0, ge=0, description="fine-tuning epochs after the last step (needs data)")
    distill: bool | str = Field(default=False, description="distillation: true, output, feature or both")
    teacher: str | None = Field(default=None, description="distil from this checkpoint (implies distill)")
    batch: int = Field(default=FINETUNE_BATCH, ge=1, description="batch size for fine-tuning and validation")


class ExportStep(BaseModel):
    model_config = STRICT_CONFIG

    max_drop: float | None = Field(
        default=None, ge=0, description="INT8: at most this many points of mAP50-95 lost (needs data)"
    )


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
    prune: PruneStep | None = Field(default=None, description="how much to prune and fine-tune")
    search: SearchStep | None = Field(default=None, description="or: prune to a latency budget")
    export: ExportStep = Field(default_factory=ExportStep, description="how the pruned model is exported")
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
    if (recipe.prune is None) == (recipe.search is None):
        raise ConfigError(
            f"{path}: give `prune` (a fixed ratio) or `search` (a latency budget), one of the two"
        )
    if recipe.export.max_drop is not None and recipe.data is None:
        raise ConfigError(f"{path}: export: max_drop measures the artifact's mAP50-95: it needs `data`")
    step = recipe.prune or recipe.search
    assert step is not None
    search = None
    try:
        prune = PruneConfig(ratio=0.5)
        if recipe.prune is not None:
            prune = PruneConfig(
                ratio=recipe.prune.ratio,
                importance=recipe.prune.importance,
                allocation=recipe.prune.allocation,
                max_layer_ratio=recipe.prune.max_layer_ratio,
                native=recipe.prune.native,
                keep_heads=recipe.prune.keep_heads,
            )
        else:
            search = _search_config(
                recipe, target, local(recipe.search.teacher) if recipe.search.teacher else None
            )
    except OptionError as e:
        section = "prune" if recipe.prune is not None else "search"
        raise ConfigError(f"{path}: {section}: {e.with_names(lambda name: name)}") from None
    return PipelineSpec(
        model=local(recipe.model),
        target=target,
        data=str(base / recipe.data) if recipe.data else None,
        calib=str(base / recipe.calib) if recipe.calib else None,
        imgsz=recipe.imgsz,
        threads=recipe.threads,
        prune=prune,
        search=search,
        epochs=step.epochs,
        batch=step.batch,
        max_drop=recipe.export.max_drop,
        seed=recipe.seed,
        budget_fraction=recipe.budget_fraction,
        profile_rounds=recipe.profile_rounds,
        out=base / recipe.out,
    )


def _search_config(recipe: Recipe, target: str, teacher: str | None) -> SearchConfig:
    """The ``search`` section as the search's settings, the budget from the target unless given."""
    from edgeprune.api import resolve_target, search_config

    s = recipe.search
    assert s is not None
    t = resolve_target(target, imgsz=recipe.imgsz)
    options = {
        "budget_ms": s.budget_ms, "speedup": s.speedup, "steps": s.steps, "step_epochs": s.step_epochs,
        "distill": s.distill or None, "teacher": teacher,
    }  # fmt: skip
    return search_config(t, recipe.data, **{k: v for k, v in options.items() if v is not None})
