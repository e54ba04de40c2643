"""A data.yaml checked before anything trains or validates on it.

Ultralytics reads a data.yaml deep inside training and validation, and its complaints arrive as
``FileNotFoundError``, ``SyntaxError`` or a YAML parser error, some mentioning a dataset download
folder. edgeprune never downloads a dataset, so :func:`check_data_yaml` reads the file first, with
Ultralytics' own resolution of its folders (``check_det_dataset`` with downloads off), and turns each
problem into one ``ConfigError`` naming the file, the field and what was expected.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from edgeprune.config import yaml_problem
from edgeprune.errors import ConfigError

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read_yaml_mapping(path: str | Path, flag: str, what: str) -> dict[str, Any]:
    """The mapping in a YAML file, or a ``ConfigError`` that names ``flag``, the file and the line."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: a folder; give {what}")
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file (expected {what}; edgeprune never downloads one)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{flag} {path}: not UTF-8 text (byte {e.start}); expected {what}") from None
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"{flag} {path}: {yaml_problem(e)}") from None
    if not isinstance(data, dict):
        found = type(data).__name__ if data is not None else "an empty file"
        raise ConfigError(f"{flag} {path}: expected {what} (a mapping), got {found}")
    return data


def _images_under(entry: Path) -> bool:
    """Whether Ultralytics' dataset loader would find images in ``entry`` (its own list of formats)."""
    from ultralytics.data.utils import IMG_FORMATS

    if entry.is_file():  # a list of image paths, one per line
        return bool(entry.read_text(errors="replace").strip())
    return any(p.suffix.lower().lstrip(".") in IMG_FORMATS for p in entry.rglob("*") if p.is_file())


@lru_cache(maxsize=32)
def _checked(name: str, mtime: float) -> dict[str, Any]:
    path, flag = Path(name), "--data"
    info = read_yaml_mapping(path, flag, "an Ultralytics data.yaml (path, train, val, names)")
    for key in ("train", "val"):
        if not info.get(key):
            raise ConfigError(
                f"{flag} {path}: no '{key}' split; a data.yaml names its {key} images (a folder or list)"
            )
        split = info[key]
        if not (
            isinstance(split, str) or (isinstance(split, list) and all(isinstance(s, str) for s in split))
        ):
            raise ConfigError(
                f"{flag} {path}: '{key}' must be a folder or list file, or a list of them; got {split!r}"
            )
    if info.get("path") is not None and not isinstance(info["path"], str):
        raise ConfigError(f"{flag} {path}: 'path' must be the dataset's folder, got {info['path']!r}")
    names, nc = info.get("names"), info.get("nc")
    if names is None and nc is None:
        raise ConfigError(f"{flag} {path}: 'names' is missing; list the class names (or give 'nc')")
    if names is not None and not isinstance(names, (list, dict)):
        raise ConfigError(f"{flag} {path}: 'names' must be a list or a mapping of class names, got {names!r}")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc < 1):
        raise ConfigError(f"{flag} {path}: 'nc' must be a positive whole number, got {nc!r}")
    if names is not None and nc is not None and len(names) != nc:
        raise ConfigError(
            f"{flag} {path}: 'names' has {len(names)} classes but 'nc' is {nc}; make them agree"
        )
    from edgeprune import _optional

    _optional.ultralytics()
    from ultralytics.data.utils import check_det_dataset

    try:
        resolved = check_det_dataset(str(path), autodownload=False)
    except (FileNotFoundError, SyntaxError, ValueError, KeyError, OSError, TypeError) as e:
        message = _ANSI.sub("", str(e)).splitlines()[0]
        message = re.sub(r"^Dataset '[^']*' ", "", message)
        raise ConfigError(f"{flag} {path}: {message}") from None
    for key in ("train", "val"):
        entries = resolved[key] if isinstance(resolved[key], list) else [resolved[key]]
        for entry in map(Path, entries):
            if not entry.exists():
                raise ConfigError(f"{flag} {path}: the {key} images {entry} do not exist")
            if not _images_under(entry):
                raise ConfigError(f"{flag} {path}: the {key} images {entry} hold no image files")
    return resolved


def check_data_yaml(data: str | Path) -> dict[str, Any]:
    """The data.yaml as Ultralytics resolves it (``names``, ``nc``, absolute ``train``/``val``), after
    checking that its splits exist and hold images. Raises ``ConfigError`` naming ``--data``."""
    path = Path(data)
    mtime = path.stat().st_mtime if path.is_file() else 0.0
    return _checked(str(path), mtime)
