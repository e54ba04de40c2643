"""Files written whole or not at all: a reader, or a run killed mid-write, sees the old file or
the new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeprune.errors import EdgepruneError

try:
    import fcntl
except ImportError:  # Windows: output folders are not locked
    fcntl = None  # type: ignore[assignment]


def _default_mode() -> int:
    umask = os.umask(0)  # read once, at import: the umask can only be read by setting it
    os.umask(umask)
    return 0o666 & ~umask


_MODE = _default_mode()


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to the disk, so that a rename after it publishes a complete file."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (``torch.save``,
    ``onnx.save``); when the block ends, the file is fsynced and renamed over ``path``, so a reader,
    or a run killed mid-write, sees the old file or the new one, never half of one. An exception
    removes the temporary file and leaves ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fsync_file(tmp)
        try:
            os.chmod(tmp, _MODE)  # mkstemp makes 0600
        except OSError:  # a filesystem without modes keeps mkstemp's
            pass
        os.replace(tmp, path)  # a rename within a folder is atomic on POSIX and Windows
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` whole or not at all (``atomic_path``). The file gets the permissions a new file
    gets from ``open(path, "w")`` (a file replaced does not keep its own)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` whole or not at all (``atomic_path``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def replace_folder(new: Path, final: Path) -> None:
    """Move the finished folder ``new`` to ``final``, replacing an older one: two renames, so a
    reader sees the old folder, then briefly none, then the new one, never a mix of the two."""
    import shutil

    for stale in final.parent.glob(f".{final.name}.old-*"):  # of a run killed between the renames
        shutil.rmtree(stale, ignore_errors=True)
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(new, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- output folders ------------------------------------------------------------------------------

LOCK_NAME = ".edgeprune.lock"
NO_LOCK_ENV = "EDGEPRUNE_NO_LOCK"
_HELD: dict[Path, list] = {}  # folder -> [open lock file, depth]: a run may enter its own folder again
_HELD_GUARD = threading.Lock()


class OutputLock:
    """An advisory lock on an output folder, held while a run writes there.

    ``flock`` on ``FOLDER/.edgeprune.lock``: the kernel drops it when the holder exits, killed or not,
    so a dead run never leaves a stale lock. The file records who holds it, for the message a second
    run gets. Re-entrant within a process (``run`` exports into the folder its search holds).
    Setting ``EDGEPRUNE_NO_LOCK=1`` (the CLI's ``--no-lock``) turns it off.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.key: Path | None = None

    def acquire(self) -> OutputLock:
        if os.environ.get(NO_LOCK_ENV) == "1" or fcntl is None:
            return self
        key = self.folder.resolve()
        with _HELD_GUARD:
            if key in _HELD:
                _HELD[key][1] += 1
                self.key = key
                return self
            f = self._lock_file(key / LOCK_NAME)
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv[:3])}, since "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")  # fmt: skip
            f.flush()
            _HELD[key] = [f, 1]
            self.key = key
        return self

    def _lock_file(self, path: Path) -> Any:
        """The lock file, open and flocked. A holder removes it on release; a file locked just as it
        was removed is not the folder's lock any more, so the inode is checked and the lock taken again."""
        for _ in range(20):
            try:
                f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
            except OSError as e:
                raise EdgepruneError(
                    f"cannot write in the output folder {self.folder}: {e.strerror}"
                ) from None
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise EdgepruneError(
                        f"cannot lock the output folder {self.folder} ({e.strerror}: a filesystem without locks?); "
                        "pass --no-lock to write without one"
                    ) from None
                raise EdgepruneError(
                    f"{self.folder} is in use by a live edgeprune run ({holder}); wait for it to finish, "
                    f"choose another --out, or pass --no-lock if you know the two runs write different files"
                ) from None
            try:
                same = os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
            except OSError:
                same = False
            if same:
                return f
            f.close()  # removed by its last holder while this run took it: take the new one
        raise EdgepruneError(f"cannot lock the output folder {self.folder}: its lock file keeps changing")

    def release(self) -> None:
        if self.key is None:
            return
        with _HELD_GUARD:
            held = _HELD[self.key]
            held[1] -= 1
            if held[1] == 0:
                del _HELD[self.key]
                (self.key / LOCK_NAME).unlink(missing_ok=True)
                held[0].close()
        self.key = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_output_folder(folder: str | Path, flag: str = "--out") -> Path:
    """Fail early, before any work, when ``folder`` cannot become an output folder: a file is in the
    way (``folder`` itself or a parent) or the nearest existing parent is not writable."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise EdgepruneError(
            f"{flag} {folder}: a file is in the way; give a folder (it is created if missing)"
        )
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise EdgepruneError(f"{flag} {folder}: {parent} is a file, so no folder can be made under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EdgepruneError(f"{flag} {folder}: {parent} is not writable by this user")
    return folder


def prepare_output_folder(folder: str | Path, flag: str = "--out") -> Path:
    """``folder`` created (with its parents) if needed, or an ``EdgepruneError`` naming the flag when it
    cannot be: a file is in the way, the filesystem refuses."""
    folder = check_output_folder(folder, flag)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgepruneError(
            f"{flag} {folder}: cannot create the output folder ({e.strerror or e})"
        ) from None
    return folder


@contextlib.contextmanager
def output_folder(folder: str | Path, flag: str = "--out") -> Iterator[Path]:
    """A run's output folder: created, locked against a second live run, and removed again if the run
    fails before writing anything into a folder it created."""
    folder = Path(folder)
    created = not folder.exists()
    prepare_output_folder(folder, flag)
    try:
        with OutputLock(folder):
            yield folder
    except BaseException:
        if created:
            _remove_if_empty(folder)
        raise


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # never hide the error that ended the run
        for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if sub.is_dir() and not any(sub.iterdir()):
                sub.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()  # only if empty


def check_report_path(path: str | Path, flag: str) -> Path:
    """A file path a report can be written to (its folder created), or an ``EdgepruneError`` naming
    ``flag``: checked before the work, so that a run does not end in an unwritable path."""
    path = Path(path)
    if path.is_dir():
        raise EdgepruneError(f"{flag} {path}: a folder; give the file to write, e.g. {path / 'report.json'}")
    prepare_output_folder(path.parent, flag)
    return path
