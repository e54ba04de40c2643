"""The options of a pruning pass (``PruneConfig``) and of a budget search (``SearchConfig``).

Each is a frozen dataclass that owns its defaults and validates itself on construction, so a
value that cannot be honoured fails before any work is done, naming the field. The CLI, the
Python API, recipes, the pipeline and the search read their defaults from here. Importable
without torch (the CLI builds its help from it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from edgeprune.errors import OptionError
from edgeprune.pruning.importance import ALLOCATIONS, IMPORTANCE, NEEDS_GRADIENTS

FINETUNE_BATCH = 16
"""Batch size of fine-tuning and validation unless told otherwise."""

FINETUNE_RECIPE: dict[str, Any] = {"optimizer": "AdamW", "lr0": 0.002, "warmup_epochs": 1, "mosaic": 0.0}
"""Ultralytics trainer settings for fine-tuning a pruned model, under the user's own overrides.
A pruned model starts from trained weights: a gentler rate than training from scratch, one
warm-up epoch and no mosaic. Chosen on the hard preset (``benchmarks/finetune_ablation.py``,
docs/benchmarks.md), one setting at a time against a seed spread of 0.02 points: Ultralytics'
own defaults (optimizer ``auto``, 3 warm-up epochs) scored 5 points lower; without warm-up the
first epoch dropped a trained model to near zero; warm-up and no mosaic together added 1.7
points. ``mosaic: 0`` builds the augmentation Ultralytics' ``close_mosaic`` switches to."""

DISTILL_MODES: tuple[str, ...] = ("feature", "output", "both")
"""What distillation from the unpruned model teaches: its features (Ultralytics' ``distill_model``),
its predictions (``models/distill.py``), or both."""
DISTILL_DEFAULT = "output"
"""What ``distill=True`` means: the mode that did best in ``benchmarks/distill_ablation.py``
(docs/benchmarks.md; feature distillation, the behaviour before modes existed, did worst)."""

SEARCH_ACTION_NAMES: tuple[str, ...] = ("width", "depth")
"""The kinds of candidate a budget search step can compare (``pruning/actions.py`` registers one
class per name): ``width`` removes channels, ``depth`` whole repeats of blocks."""

SENSITIVITY_RATIOS: tuple[float, ...] = (0.3, 0.6)
"""``edgeprune analyze``: the fractions of a group's channels removed, one candidate each."""


def _check_importance(name: str) -> None:
    if name not in IMPORTANCE:
        raise OptionError(f"`importance`: unknown criterion {name!r}; known: {', '.join(IMPORTANCE.names())}")


@dataclass(frozen=True)
class PruneConfig:
    """How to prune.

    Attributes:
        ratio: fraction of channels removed, in [0, 1): from each group (``uniform``) or in total,
            the least important first across all groups (``global``).
        importance: name of a criterion in ``IMPORTANCE`` (l1, l2, bn, taylor, lamp, random).
        allocation: ``uniform`` or ``global``.
        max_layer_ratio: no group loses more than this fraction of its channels (before rounding).
        round_to: channel counts after pruning are multiples of this (the target's alignment).
        grad_batches, grad_batch_size: how much of the train split gradient-based criteria see.
        native: prune only to widths the model's own config can say (Ultralytics: layer widths
            multiples of 8 and of ``round_to``, hidden widths through each block's expansion,
            everything else as Ultralytics' constructors derive it), and rewrite the config to
            say them, so ``YOLO(checkpoint).train()`` rebuilds the pruned network
            (``models/ultralytics_native.py``).
        keep_heads: every attention block keeps all its heads (its residual stream is kept whole);
            by default an attention's stream shrinks in whole heads, the least important first.
    """

    ratio: float
    importance: str = "l2"
    allocation: str = "uniform"
    max_layer_ratio: float = 0.8
    round_to: int = 1
    grad_batches: int = 4
    grad_batch_size: int = 8
    native: bool = False
    keep_heads: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise OptionError(f"`ratio` must be in [0, 1), got {self.ratio}")
        if self.round_to < 1:
            raise OptionError(f"`round_to` must be >= 1, got {self.round_to}")
        if self.allocation not in ALLOCATIONS:
            raise OptionError(f"`allocation`: unknown {self.allocation!r}; known: {', '.join(ALLOCATIONS)}")
        if not 0.0 < self.max_layer_ratio < 1.0:
            raise OptionError(f"`max_layer_ratio` must be in (0, 1), got {self.max_layer_ratio}")
        if self.allocation == "uniform" and self.ratio > self.max_layer_ratio:
            raise OptionError(
                f"uniform pruning removes {self.ratio:.0%} of every layer, above `max_layer_ratio` "
                f"{self.max_layer_ratio:g}; raise `max_layer_ratio` or lower `ratio`"
            )
        if self.grad_batches < 1 or self.grad_batch_size < 1:
            raise OptionError("`grad_batches` and `grad_batch_size` must be >= 1")
        _check_importance(self.importance)

    @property
    def needs_gradients(self) -> bool:
        return self.importance in NEEDS_GRADIENTS

    def check_data(self, data: str | Path | None) -> None:
        """Raise ``OptionError`` when the criterion needs a dataset and ``data`` is None."""
        if self.needs_gradients and data is None:
            raise OptionError(
                f"criterion {self.importance!r} needs a model family with a training loss and `data` "
                "(a few batches of real data give the gradients)"
            )

    def with_changes(self, **changes: Any) -> PruneConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for progress output, e.g. ``40% of every group (l2, channels rounded to 8)``."""
        scope = "of all channels, ranked globally" if self.allocation == "global" else "of every group"
        native = ", native widths" if self.native else ""
        heads = ", attention heads kept" if self.keep_heads else ""
        return f"{self.ratio:.0%} {scope} ({self.importance}, channels rounded to {self.round_to}{native}{heads})"


def search_importance(data: str | Path | None) -> str:
    """The budget search's default criterion: ``taylor`` when a dataset gives gradients, else ``l2``."""
    return "taylor" if data is not None else "l2"


@dataclass(frozen=True)
class SearchConfig:
    """How the budget search runs.

    Attributes:
        budget_ms: the latency to meet, at ``percentile``.
        speedup: instead of ``budget_ms``: the budget is the baseline's latency divided by this,
            the baseline timed again with every candidate (the median of its timings so far), so
            that a machine running faster or slower as a whole does not move the goal.
        percentile: ``p50``, ``p90``, ``p99`` or ``mean``.
        steps: pruning steps from the baseline to the budget (fine-tuning after each).
        importance: channel criterion (``l1``, ``l2``, ``bn``, ``taylor``, ``lamp``, ``random``).
        max_layer_ratio: no layer loses more than this fraction of its channels in one step.
        margin: aim this fraction under the budget, so that measurement noise does not flip the
            verdict; ``"auto"``: ``1 - median / p90`` of the baseline's timings so far (see
            ``Goals.margin``).
        tolerance: a probe within this fraction above its step's goal is accepted.
        probes_per_step: candidates measured per step at most.
        step_epochs: fine-tuning epochs after each step but the last (needs data).
        final_epochs: fine-tuning epochs after the last step (needs data).
        distill: fine-tune with knowledge distillation from the unpruned model: ``True`` (the
            ``DISTILL_DEFAULT`` mode) or a mode of ``DISTILL_MODES``; ``False``: none.
        teacher: a checkpoint to distil from instead of the unpruned model (a larger model, or
            the same one trained longer), with the same classes and head layout; implies
            ``distill``. Loaded with the same care as the model.
        calib_images: calibration images of INT8 candidates (latency does not depend on them).
        rounds, iterations, warmup: interleaved timing of each candidate against the baseline
            (``ArtifactMeter``: per model and round, the target's warm-up, then ``iterations``
            runs and a quarter of the target's ``min_time_s``).
        extra_steps: steps allowed after the planned ones while the budget is still missed.
        bn_images: train images that re-estimate BatchNorm statistics after each step (with data;
            0: never), before that step's fine-tuning, evaluation and the next step's ranking.
        actions: the kinds of candidate each step compares (``SEARCH_ACTION_NAMES``): ``width``,
            ``depth`` or both. With more than one, candidates within the step's goal are compared
            by a quick accuracy proxy (the loss on a few validation batches; needs data).
        sensitivity: an ``analysis.json`` of ``edgeprune analyze`` (same model and target): width
            candidates rank groups by accuracy lost per ms saved, measured, at the width a removal
            leaves, instead of by channel importance alone; None: by importance.
        native: every candidate keeps to what the model's config can say (``PruneConfig.native``),
            so the result retrains with plain Ultralytics.
        keep_heads: attention blocks keep all their heads (``PruneConfig.keep_heads``).
    """

    budget_ms: float | None = None
    percentile: str = "p50"
    speedup: float | None = None
    steps: int = 3
    importance: str = "l2"
    max_layer_ratio: float = 0.6
    margin: float | str = 0.03
    tolerance: float = 0.02
    probes_per_step: int = 3
    step_epochs: int = 0
    final_epochs: int = 0
    distill: bool | str = False
    teacher: str | None = None
    calib_images: int = 16
    rounds: int = 6
    iterations: int = 10
    warmup: int = 5
    extra_steps: int = 3
    bn_images: int = 256
    actions: tuple[str, ...] = ("width",)
    sensitivity: str | None = None
    native: bool = False
    keep_heads: bool = False

    def __post_init__(self) -> None:
        from edgeprune.profiling.timing import PERCENTILES

        actions = (self.actions,) if isinstance(self.actions, str) else tuple(self.actions)
        object.__setattr__(self, "actions", actions)  # a list from YAML or JSON is kept as a tuple
        if self.sensitivity is not None:
            object.__setattr__(self, "sensitivity", str(self.sensitivity))  # a Path is kept as text (JSON)
        if self.teacher is not None:
            object.__setattr__(self, "teacher", str(self.teacher))
            if not self.distill:
                object.__setattr__(self, "distill", True)  # a teacher is for distilling
        unknown = [a for a in actions if a not in SEARCH_ACTION_NAMES]
        if not actions or unknown or len(set(actions)) != len(actions):
            raise OptionError(
                f"`actions` must name each of {', '.join(SEARCH_ACTION_NAMES)} at most once, and at least one; "
                f"got {', '.join(map(str, actions)) or 'none'}"
            )
        if (self.budget_ms is None) == (self.speedup is None):
            raise OptionError("give a latency budget or a speed-up, one of the two: `budget_ms` or `speedup`")
        if self.budget_ms is not None and not self.budget_ms > 0:
            raise OptionError(f"`budget_ms` must be > 0, got {self.budget_ms}")
        if self.speedup is not None and not self.speedup > 1:
            raise OptionError(f"`speedup` must be > 1 (times faster than the baseline), got {self.speedup}")
        if self.percentile not in PERCENTILES:
            raise OptionError(
                f"`percentile` must be one of {', '.join(PERCENTILES)}, got {self.percentile!r}"
            )
        for name in ("steps", "probes_per_step", "rounds", "iterations"):
            if getattr(self, name) < 1:
                raise OptionError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        for name in ("step_epochs", "final_epochs", "extra_steps", "warmup", "bn_images", "calib_images"):
            if getattr(self, name) < 0:
                raise OptionError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if self.margin != "auto" and (isinstance(self.margin, str) or not 0 <= self.margin < 0.5):
            raise OptionError(f"`margin` must be in [0, 0.5) or 'auto', got {self.margin!r}")
        if not 0 <= self.tolerance < 0.5:
            raise OptionError(f"`tolerance` must be in [0, 0.5), got {self.tolerance}")
        if not 0.0 < self.max_layer_ratio < 1.0:
            raise OptionError(f"`max_layer_ratio` must be in (0, 1), got {self.max_layer_ratio}")
        _check_importance(self.importance)
        if isinstance(self.distill, str) and self.distill not in DISTILL_MODES:
            raise OptionError(
                f"`distill` must be one of {', '.join(DISTILL_MODES)} (or true), got {self.distill!r}"
            )

    def check_data(self, data: str | Path | None, actions: tuple[str, ...] | None = None) -> None:
        """Raise ``OptionError`` when one of ``actions`` (default: the config's) needs a dataset and
        ``data`` is None."""
        if "depth" in (self.actions if actions is None else actions) and data is None:
            raise OptionError("`actions` depth ranks repeats by their cost in accuracy: it needs `data`")

    @property
    def distill_mode(self) -> str | None:
        """The distillation mode, or None for none."""
        if self.distill is True:
            return DISTILL_DEFAULT
        return self.distill or None

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def budget_at(self, reference_ms: float) -> float:
        """The budget in ms when the baseline runs ``reference_ms``: ``budget_ms``, or
        ``reference_ms / speedup``."""
        return float(self.budget_ms) if self.speedup is None else reference_ms / self.speedup
