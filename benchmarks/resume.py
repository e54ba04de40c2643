"""SIGKILL a fine-tuning run at random moments and resume it: how much finished work is redone?

    .venv/bin/python benchmarks/resume.py [--kills 10] [--epochs 4] [--json benchmarks/results/resume.json]

Each trial runs ``edgeprune prune yolov8n.yaml --ratio 0.3 --epochs E`` on a small synthetic set
(128 images, 64 px), SIGKILLs it at a moment drawn uniformly over an uninterrupted run's fine-tuning, then runs
the same command with ``--resume`` to the end. Counted per trial:

- ``finished_before_kill``: epochs whose line the killed run printed (an epoch's line comes after
  its checkpoints and resume state are written);
- ``resumed_at``: the epoch the resumed run started with (from its "resumes at epoch k/E" line;
  1 when it started over);
- ``finished_epochs_redone``: finished epochs the resumed run trained again,
  ``max(0, finished_before_kill - (resumed_at - 1))``. The target is 0: at most the epoch that was
  running when the kill came is redone.

The resumed run must end with a readable pruned.pt and prune.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def command(data: Path, out: Path, epochs: int) -> list[str]:
    return [
        sys.executable, "-m", "edgeprune.cli", "prune", "yolov8n.yaml", "-t", "cpu-ort-fp32", "--imgsz", "64",
        "--ratio", "0.3", "--data", str(data), "--epochs", str(epochs), "--batch", "8", "--out", str(out),
    ]  # fmt: skip


def run(args: list[str], kill_after: float | None = None) -> tuple[str, int, list[tuple[float, str]]]:
    """Output, exit code and (seconds since start, line) of ``args``; SIGKILLed at ``kill_after`` s."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    timer = None
    if kill_after is not None:
        import threading

        timer = threading.Timer(kill_after, lambda: p.poll() is None and os.kill(p.pid, signal.SIGKILL))
        timer.start()
    lines = [(time.perf_counter() - t0, line) for line in p.stdout]
    p.wait()
    if timer is not None:
        timer.cancel()
    return "".join(line for _, line in lines), p.returncode, lines


def epochs_printed(text: str, epochs: int) -> int:
    return len(set(re.findall(rf"epoch (\d+)/{epochs}\b", text)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "resume.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from edgeprune.data import make_synthetic_dataset
    from edgeprune.models.safe_load import safe_torch_load

    root = Path(tempfile.mkdtemp(prefix="edgeprune-resume-"))
    data = make_synthetic_dataset(root / "data", n_train=128, n_val=8, imgsz=64, seed=3)
    text, code, lines = run(command(data, root / "control", args.epochs))
    assert code == 0, text[-3000:]
    at_epoch = [t for t, line in lines if re.search(rf"epoch \d+/{args.epochs}\b", line)]
    per_epoch = (at_epoch[-1] - at_epoch[0]) / (args.epochs - 1)
    window = (at_epoch[0] - per_epoch, at_epoch[-1])  # the fine-tuning, in the uninterrupted run
    print(f"uninterrupted run: {lines[-1][0]:.1f} s, fine-tuning {window[0]:.1f}-{window[1]:.1f} s")
    rng = random.Random(args.seed)
    trials = []
    for i in range(args.kills):
        out = root / f"trial{i}"
        at = rng.uniform(*window)  # a moment during the fine-tuning
        killed, code, _ = run(command(data, out, args.epochs), kill_after=at)
        finished = epochs_printed(killed, args.epochs)
        t0 = time.perf_counter()
        resumed, code2, _ = run([*command(data, out, args.epochs), "--resume"])
        resumed_s = time.perf_counter() - t0
        m = re.search(rf"resumes at epoch (\d+)/{args.epochs}", resumed)
        had_finished = re.search(r"had finished its (\d+) epochs", resumed)
        resumed_at = int(m.group(1)) if m else (args.epochs + 1 if had_finished else 1)
        ok = code2 == 0 and (out / "prune.json").is_file()
        if ok:
            safe_torch_load(out / "pruned.pt")
            json.loads((out / "prune.json").read_text())
        trial = {
            "kill_after_s": round(at, 2),
            "killed": code == -signal.SIGKILL,
            "finished_before_kill": finished,
            "resumed_at": resumed_at,
            "finished_epochs_redone": max(0, finished - (resumed_at - 1)),
            "epochs_trained_on_resume": epochs_printed(resumed, args.epochs),
            "resumed_run_ok": ok,
            "resumed_run_s": round(resumed_s, 1),
        }
        trials.append(trial)
        print(trial, flush=True)
        if not ok:
            print(resumed[-3000:])
    killed_trials = [t for t in trials if t["killed"]]
    result = {
        "benchmark": "resume",
        "command": " ".join(["benchmarks/resume.py", f"--kills {args.kills}", f"--epochs {args.epochs}"]),
        "epochs": args.epochs,
        "uninterrupted_s": round(lines[-1][0], 1),
        "fine_tuning_window_s": [round(x, 1) for x in window],
        "seconds_per_epoch": round(per_epoch, 2),
        "kills": len(killed_trials),
        "all_resumed_runs_ok": all(t["resumed_run_ok"] for t in trials),
        "max_finished_epochs_redone": max((t["finished_epochs_redone"] for t in killed_trials), default=0),
        "trials": trials,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "trials"}, indent=2))


if __name__ == "__main__":
    main()
