"""Files written whole or not at all: a reader, or a run killed mid-write, sees the old file or
the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _default_mode() -> int:
    umask = os.umask(0)  # read once, at import: the umask can only be read by setting it
    os.umask(umask)
    return 0o666 & ~umask


_MODE = _default_mode()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename it over ``path``
    (a rename within a folder is atomic on POSIX and Windows). The file gets the permissions a
    new file gets from ``open(path, "w")`` (a file replaced does not keep its own)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, _MODE)  # mkstemp makes 0600
        except OSError:  # a filesystem without modes keeps mkstemp's
            pass
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
