"""Datasets for offline demos, tests and benchmarks (see :mod:`edgeprune.data.synthetic`)."""

from edgeprune.data.synthetic import CLASS_NAMES, make_synthetic_dataset
from edgeprune.data.tasks import task_dataset

__all__ = ["CLASS_NAMES", "make_synthetic_dataset", "task_dataset"]
