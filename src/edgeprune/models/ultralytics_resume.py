"""Fine-tuning that survives a kill: Ultralytics' trainer resumed from the last finished epoch.

Ultralytics resumes a run from its ``last.pt``, a pickle of whole modules that it reads with
plain ``torch.load`` and whose model it rebuilds from the config, which would undo pruning. So
edgeprune keeps its own resume state beside the run, ``RUN/edgeprune-resume.pt``: tensors and
plain numbers only, read with ``torch.load(weights_only=True)``. It holds the EMA weights (the
weights Ultralytics resumes from), the optimizer's state, the epoch and the best fitness so far.
The architecture comes from the caller (the pruned model the run started from), and the state is
refused unless every tensor has that model's shape.

Every checkpoint of the run is written atomically (temp file, fsync, rename): a kill while
Ultralytics writes ``last.pt`` or ``best.pt`` leaves the previous epoch's file, whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.errors import EdgepruneError
from edgeprune.files import atomic_path, fsync_file

RESUME_FILE = "edgeprune-resume.pt"
RESUME_VERSION = 1
_CARRIED = "edgeprune_carried"


def carried(trainer: Any) -> dict[str, int | float | None]:
    """Plain numbers that callbacks keep on ``trainer`` across a resume (e.g. the epoch output
    distillation stopped after); saved in the resume state and put back when it is resumed."""
    if not hasattr(trainer, _CARRIED):
        setattr(trainer, _CARRIED, {})
    return getattr(trainer, _CARRIED)


@dataclass
class ResumeState:
    """What a killed fine-tuning run had finished: ``epoch`` (0-based) of ``epochs``."""

    epoch: int
    epochs: int
    state: dict[str, Any]
    path: Path


def _shapes(sd: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items() if isinstance(v, torch.Tensor)}


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


def save_atomically(trainer: Any) -> None:
    """Make ``trainer`` write last.pt and best.pt atomically, and ``RESUME_FILE`` after them."""
    original = trainer.save_model

    def save_model() -> bool:
        last, best = Path(trainer.last), Path(trainer.best)
        staged = {best: best.with_name(f".{best.name}.tmp"), last: last.with_name(f".{last.name}.tmp")}
        for tmp in staged.values():  # left by a run killed mid-write: not this epoch's file
            tmp.unlink(missing_ok=True)
        trainer.last, trainer.best = staged[last], staged[best]
        try:
            saved = original()
        finally:
            trainer.last, trainer.best = last, best
        for final, tmp in staged.items():  # best.pt is written only in a best epoch
            if tmp.exists():
                fsync_file(tmp)
                os.replace(tmp, final)
        _write_state(trainer, Path(trainer.save_dir) / RESUME_FILE)
        return saved

    trainer.save_model = save_model


def _write_state(trainer: Any, path: Path) -> None:
    from ultralytics.utils.torch_utils import unwrap_model

    stopper = trainer.stopper
    state = {
        "version": RESUME_VERSION,
        "epoch": int(trainer.epoch),
        "epochs": int(trainer.epochs),
        "best_fitness": _float(trainer.best_fitness),
        "stopper": {"best_fitness": _float(stopper.best_fitness), "best_epoch": int(stopper.best_epoch)},
        "ema": unwrap_model(trainer.ema.ema).state_dict(),
        "updates": int(trainer.ema.updates),
        "optimizer": trainer.optimizer.state_dict(),
        "carried": dict(carried(trainer)),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def student_state(sd: dict[str, Any]) -> dict[str, Any]:
    """The trained model's part of an EMA state: all of it, or the student's in a distillation run."""
    prefix = "student_model."
    if any(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def read_state(run_dir: Path, model: nn.Module) -> tuple[ResumeState | None, str]:
    """The resume state in ``run_dir`` if it fits ``model``, else None and why not."""
    path = Path(run_dir) / RESUME_FILE
    if not path.is_file():
        return None, f"no fine-tuning state in {run_dir}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        epoch, epochs = int(state["epoch"]), int(state["epochs"])
        ema = state["ema"]
        if state.get("version") != RESUME_VERSION or not isinstance(ema, dict):
            return None, f"{path} was written by another edgeprune version"
    except Exception as e:  # written atomically, so only a damaged disk or another program's file
        return None, f"{path} is unreadable ({type(e).__name__}: {e})"
    if _shapes(student_state(ema)) != _shapes(model.state_dict()):
        return None, f"{path} holds another architecture than the model being fine-tuned"
    return ResumeState(epoch, epochs, state, path), ""


def _load(module: nn.Module, sd: dict[str, Any]) -> None:
    """``sd`` into ``module``, every key; a distillation model's frozen teacher is not in the EMA
    state (it is rebuilt from its checkpoint)."""
    result = module.load_state_dict(sd, strict=False)
    wrong = [k for k in result.missing_keys if not k.startswith("teacher_model.")] + result.unexpected_keys
    if wrong:
        raise EdgepruneError(
            f"the fine-tuning state does not fit the model ({len(wrong)} tensors, e.g. {wrong[0]}); "
            "run again without resuming"
        )


def resume_from(trainer: Any, resumed: ResumeState) -> None:
    """Continue ``trainer`` after ``resumed.epoch``: weights, EMA, optimizer, best fitness, schedule.

    Applied when Ultralytics has built the optimizer, the EMA and the scheduler for the live model,
    as its own resume does from ``last.pt``.
    """
    state = resumed.state

    def apply(tr: Any) -> None:
        from ultralytics.utils.torch_utils import unwrap_model

        model = unwrap_model(tr.model)
        _load(model, state["ema"])  # Ultralytics, too, resumes from the EMA weights
        _load(tr.ema.ema, state["ema"])
        tr.ema.updates = state["updates"]
        tr.optimizer.load_state_dict(state["optimizer"])
        tr.best_fitness = state["best_fitness"]
        tr.stopper.best_fitness = state["stopper"]["best_fitness"]
        tr.stopper.best_epoch = state["stopper"]["best_epoch"]
        carried(tr).update(state.get("carried", {}))  # absent from states written before it existed
        tr.start_epoch = resumed.epoch + 1
        tr.scheduler.last_epoch = tr.start_epoch - 1
        student = getattr(model, "student_model", model)
        if getattr(student.model[-1], "one2one_cv2", None) is not None:  # NMS-free heads schedule their loss
            model.criterion = model.init_criterion()
            model.criterion.updates = tr.start_epoch - 1
            model.criterion.update()

    trainer.add_callback("on_pretrain_routine_end", apply)
