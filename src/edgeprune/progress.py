"""Progress of long stages: a live bar with ETA on a terminal, one line per step elsewhere.

The lines (an epoch's loss and mAP, a search step's latency) are printed as always; on a terminal
the command also shows a bar per running stage below them (rich's progress bars, which move
printed lines above themselves). In CI logs and pipes nothing but the lines is written. The CLI
turns bars on when its output is a terminal (``enable_bars``); the Python API leaves them off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_state: dict[str, Any] = {"enabled": False, "live": None}


def enable_bars(on: bool = True) -> None:
    _state["enabled"] = on


class Task:
    """One stage's bar; ``advance`` when a unit (an epoch, a step) is done."""

    def __init__(self, progress: Any = None, task_id: Any = None):
        self._progress, self._id = progress, task_id

    def advance(self, units: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._id, units)
            self._progress.refresh()


@contextmanager
def track(total: int, description: str) -> Iterator[Task]:
    """A bar of ``total`` units while the block runs (stacked under any bar already shown)."""
    if not _state["enabled"] or total <= 0:
        yield Task()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = _state["live"]
    if progress is None:
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), transient=True,
            auto_refresh=False,  # redrawn when a unit is done: no thread taking the GIL while latency is timed
        )  # fmt: skip
        progress.start()
        _state["live"] = progress
    task_id = progress.add_task(description, total=total)
    progress.refresh()
    try:
        yield Task(progress, task_id)
    finally:
        progress.remove_task(task_id)
        if not progress.tasks:
            progress.stop()
            _state["live"] = None
