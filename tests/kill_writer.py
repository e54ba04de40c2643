"""A writer to be killed: rewrites one file through edgeprune's atomic writers, forever, and prints
each version number once it is on disk. ``test_kill.py`` and ``benchmarks/kill.py`` SIGKILL it at
random moments and check what a reader then finds.

    python tests/kill_writer.py json|json-plain|checkpoint PATH
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(kind: str, path: Path) -> None:
    if kind == "json":
        from edgeprune.files import write_text_atomic

        payload = "x" * 200_000  # big enough that a write takes a while
        write = lambda i: write_text_atomic(path, json.dumps({"version": i, "payload": payload}))  # noqa: E731
    elif kind == "json-plain":  # the control: a plain write, which a kill can leave half-written
        payload = "x" * 200_000
        write = lambda i: path.write_text(json.dumps({"version": i, "payload": payload}))  # noqa: E731
    elif kind == "checkpoint":
        import torch

        from edgeprune.files import atomic_path

        weights = torch.randn(1_000_000)

        def write(i: int) -> None:
            with atomic_path(path) as tmp:
                torch.save({"version": i, "weights": weights}, tmp)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        write(i)
        print(i, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
