"""Progress: a live bar with ETA on a terminal; the same lines alone in a pipe or a CI log."""

from __future__ import annotations

import os
import select
import subprocess
import sys

from conftest import run_cli


def _prune_args(tiny_data, out):
    out.parent.mkdir(parents=True, exist_ok=True)
    target = out.parent / "t.yaml"
    target.write_text(
        "name: t\ndescription: progress test\ndevice: {kind: x86-cpu, name: box}\nruntime: onnxruntime\n"
        "precision: fp32\nimgsz: 64\nthreads: 1\nround_to: 8\nbudget: {latency_ms: 1000, percentile: p50}\n"
        "profiling: {warmup: 1, warmup_s: 0, iterations: 5, min_time_s: 0}\n"
    )
    return ["prune", "yolov8n.yaml", "-t", str(target), "--ratio", "0.3", "--data", str(tiny_data), "--epochs", "1",
            "--batch", "8", "--out", str(out)]  # fmt: skip


def _run_in_terminal(args: list[str], timeout: float = 300) -> str:
    """Run ``edgeprune ARGS`` with a pseudo-terminal as its stdout and stderr, as in a shell."""
    leader, follower = os.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm-256color"}
    env.pop("CI", None)
    proc = subprocess.Popen([sys.executable, "-m", "edgeprune.cli", *args], stdout=follower, stderr=follower,
                            stdin=subprocess.DEVNULL, env=env)  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], timeout)
        if not ready:
            proc.kill()
            raise AssertionError(
                "no output for too long:\n" + b"".join(chunks).decode(errors="replace")[-2000:]
            )
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_a_bar_with_eta_and_a_pipe_the_lines_alone(tiny_data, tmp_path):
    shown = _run_in_terminal(_prune_args(tiny_data, tmp_path / "tty" / "out"))
    assert "epoch 1/1" in shown  # the lines, as always
    assert "epochs" in shown and "ETA" in shown and "━" in shown  # and the live bar under them
    piped = run_cli(*_prune_args(tiny_data, tmp_path / "pipe" / "out"))
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert "epoch 1/1" in piped.stdout and "ETA" not in piped.stdout + piped.stderr
    assert "━" not in piped.stdout + piped.stderr and "\x1b[" not in piped.stdout
