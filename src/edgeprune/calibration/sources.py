"""Where calibration images come from: an image folder or a split of an Ultralytics data.yaml.

Sampling is deterministic: the files are sorted, then ``n`` of them are drawn with a seeded
generator, so the same source, ``n`` and seed always give the same images in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeprune.calibration.preprocess import IMAGE_SUFFIXES, preprocess
from edgeprune.errors import EdgepruneError


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _split_entries(data_yaml: Path, split: str, flag: str) -> list[Path]:
    from edgeprune.data.check import read_yaml_mapping

    info = read_yaml_mapping(data_yaml, flag, "an image folder or a data.yaml")
    if split not in info:
        known = ", ".join(k for k in ("train", "val", "test") if k in info) or "none"
        raise EdgepruneError(f"{data_yaml}: no {split!r} split (splits: {known})")
    root = Path(info.get("path") or data_yaml.parent)
    if not root.is_absolute():
        root = (data_yaml.parent / root).resolve()
    entries = info[split] if isinstance(info[split], list) else [info[split]]
    if not all(isinstance(e, str) for e in entries) or not isinstance(info.get("path") or "", str):
        raise EdgepruneError(
            f"{flag} {data_yaml}: '{split}' must name folders or list files, got {info[split]!r}"
        )
    return [p if p.is_absolute() else root / p for p in map(Path, entries)]


def source_images(source: str | Path, split: str = "train", flag: str = "--calib") -> list[Path]:
    """All image files of ``source`` (a folder, or a data.yaml's ``split``), sorted.

    A data.yaml split may be a folder, a text file listing images (one per line, relative to the
    dataset root) or a list of either, as in Ultralytics.
    """
    source = Path(source)
    if not source.exists():
        raise EdgepruneError(f"{flag} {source}: not found (expected an image folder or a data.yaml)")
    if source.is_dir():
        entries = [source]
    elif source.suffix.lower() in (".yaml", ".yml"):
        entries = _split_entries(source, split, flag)
    else:
        raise EdgepruneError(f"{flag} {source}: expected an image folder or a data.yaml")
    images: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            images += _images_in(entry)
        elif entry.suffix == ".txt" and entry.is_file():
            base = entry.parent
            lines = [ln.strip() for ln in entry.read_text(errors="replace").splitlines() if ln.strip()]
            images += [Path(ln) if Path(ln).is_absolute() else (base / ln).resolve() for ln in lines]
        else:
            raise EdgepruneError(
                f"{flag} {source}: its {split} images {entry} are neither a folder nor a list file"
            )
    if not images:
        raise EdgepruneError(f"{flag} {source}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return sorted(set(images))


def sample(paths: list[Path], n: int, seed: int = 0) -> list[Path]:
    """``n`` of ``paths`` (all of them if fewer), drawn reproducibly."""
    paths = sorted(paths)
    if n >= len(paths):
        return paths
    order = np.random.default_rng(seed).permutation(len(paths))[:n]
    return [paths[i] for i in order]


@dataclass(frozen=True)
class CalibrationData:
    """The calibration images of one export, preprocessed like Ultralytics' inference."""

    images: tuple[Path, ...]
    imgsz: int
    source: str

    @classmethod
    def from_source(
        cls, source: str | Path, imgsz: int, n: int, *, split: str = "train", seed: int = 0
    ) -> CalibrationData:
        return cls(tuple(sample(source_images(source, split), n, seed)), imgsz, str(source))

    def __len__(self) -> int:
        return len(self.images)

    def arrays(self) -> Iterator[np.ndarray]:
        """One (1, 3, imgsz, imgsz) float32 array per image."""
        from edgeprune.progress import track

        with track(len(self.images), "calibration images") as bar:
            for path in self.images:
                yield preprocess(path, self.imgsz)[None]
                bar.advance()

    def batches(self, batch: int) -> Iterator[np.ndarray]:
        """(batch, 3, imgsz, imgsz) float32 arrays; the last one may be smaller."""
        for i in range(0, len(self.images), batch):
            yield np.stack([preprocess(p, self.imgsz) for p in self.images[i : i + batch]])

    def describe(self) -> dict[str, object]:
        return {"source": self.source, "images": len(self.images), "imgsz": self.imgsz}
