"""SIGKILL a writer at random moments, many times: what does a reader find afterwards?

    .venv/bin/python benchmarks/kill.py [--json-kills 1000] [--checkpoint-kills 50]
        [--json benchmarks/results/kill.json]

Arms: report JSON through ``edgeprune.files.write_text_atomic``; a checkpoint through
``atomic_path`` + ``torch.save``; and the control, the same JSON written with a plain
``Path.write_text``, which shows that the check does catch a half-written file. After each kill the
file must parse and hold the writer's last finished version or the one it was writing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WRITER = REPO / "tests" / "kill_writer.py"


def arm(kind: str, kills: int, max_delay_s: float, seed: int) -> dict:
    rng = random.Random(seed)
    path = Path(tempfile.mkdtemp()) / ("last.pt" if kind == "checkpoint" else "report.json")
    unreadable = wrong = before_first = 0
    t0 = time.perf_counter()
    for _ in range(kills):
        writer = subprocess.Popen(
            [sys.executable, str(WRITER), kind, str(path)], stdout=subprocess.PIPE, text=True
        )
        writer.stdout.readline()  # ready
        time.sleep(rng.uniform(0, max_delay_s))
        os.kill(writer.pid, signal.SIGKILL)
        done = [int(x) for x in writer.stdout.read().split()]
        writer.wait()
        try:
            if not path.exists():
                before_first += 1
                continue
            if kind == "checkpoint":
                from edgeprune.models.safe_load import safe_torch_load

                version = safe_torch_load(path)["version"]
            else:
                version = json.loads(path.read_text())["version"]
        except Exception:  # noqa: BLE001 (what the benchmark counts)
            unreadable += 1
            continue
        if done and version not in (done[-1], done[-1] + 1):
            wrong += 1
    return {
        "arm": kind,
        "kills": kills,
        "unreadable_after_kill": unreadable,
        "wrong_version_after_kill": wrong,
        "killed_before_any_file": before_first,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json-kills", type=int, default=1000)
    ap.add_argument("--checkpoint-kills", type=int, default=50)
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "kill.json"))
    args = ap.parse_args()
    rows = [
        arm("json", args.json_kills, 0.25, seed=0),
        arm("checkpoint", args.checkpoint_kills, 1.5, seed=1),
        arm("json-plain", max(100, args.json_kills // 10), 0.25, seed=2),
    ]
    for r in rows:
        print(r, flush=True)
    result = {"benchmark": "kill", "arms": rows, "survived": sum(r["kills"] for r in rows[:2]) - sum(
        r["unreadable_after_kill"] + r["wrong_version_after_kill"] for r in rows[:2])}  # fmt: skip
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
