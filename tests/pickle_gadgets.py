"""Helpers for writing hostile pickles by hand, shared by test_safe_load.py and
test_malicious_checkpoints.py."""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path


class Call:
    """Pickles as "call fn(*args)"; a Call can itself be the fn of another Call."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __call__(self, *args):  # the pickler only accepts callables as the function of a reduce
        raise AssertionError("never called while pickling")

    def __reduce__(self):
        return self.fn, self.args


def evil_cfg(marker: Path) -> dict:
    """A model config whose ``activation`` Ultralytics passes to eval(): runs a shell command."""
    return {
        "activation": f"__import__('os').system('touch {marker}') or __import__('torch').nn.SiLU()",
        "nc": 1,
        "backbone": [[-1, 1, "Conv", [8, 3, 2]]],
        "head": [[-1, 1, "Conv", [8, 3, 2]]],
    }


def torch_zip(path: Path, pickled: bytes, records: dict[str, bytes] | None = None, *, extra=()) -> Path:
    """A torch.save-style archive whose data.pkl is exactly ``pickled``, with storage ``records``
    (``archive/data/KEY``) and ``extra`` (name, bytes) entries."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickled)
        for key, data in (records or {}).items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for name, data in extra:
            z.writestr(name, data)
    return path


def op_global(module: str, name: str) -> bytes:
    """GLOBAL ``module.name``."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def op_text(text: str) -> bytes:
    """BINUNICODE ``text``."""
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def inline(obj) -> bytes:
    """The opcodes that push ``obj`` (plain data only), for splicing into a hand-written pickle."""
    return pickle.dumps(obj, protocol=2)[2:-1]
