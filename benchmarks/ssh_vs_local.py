"""Does profiling over SSH give the number a local profile gives? Same artifact, same target,
alternating runs of `edgeprune profile` here and `edgeprune profile --host` on one device.

    .venv/bin/python benchmarks/ssh_vs_local.py --host box [--ssh-config F] [--python /path/python]
        [--target cpu-ort-fp32] [--imgsz 160] [--threads 1] [--rounds 7] [--json out.json]

Pointed at localhost (an sshd on this machine, the venv's Python as the remote one), both sides
run the same profiler on the same CPU, so the ratio of their p50 medians measures what the SSH
path adds: it should be 1 within timing noise. Pointed at a real device, the "local" column is
this machine and the ratio is simply how the two machines compare.

Each run is a fresh process (as a user runs it); local and SSH runs alternate so that drifting
machine load hits both alike. The model is YOLOv8n built from its YAML (6 classes, untrained:
latency does not depend on the weights), exported for the target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", required=True, help="user@host[:port] or an ~/.ssh/config alias")
    parser.add_argument("--ssh-config", type=Path)
    parser.add_argument("--python", default="python3", help="the Python that has edgeprune on the host")
    parser.add_argument("--target", default="cpu-ort-fp32")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from edgeprune.api import export, resolve_target
    from edgeprune.models import load_model
    from edgeprune.profiling.remote import target_yaml

    work = Path(tempfile.mkdtemp(prefix="ssh-vs-local-"))
    target = resolve_target(args.target, imgsz=args.imgsz).with_overrides(
        name=f"{args.target}-{args.imgsz}px-{args.threads}t", threads=args.threads
    )
    target_file = work / "target.yaml"
    target_file.write_text(target_yaml(target))
    artifact = export(load_model("yolov8n.yaml", nc=6), target_file, out=work, stem="yolov8n").artifact
    hosts = work / "hosts.yaml"
    hosts.write_text(json.dumps([{"host": args.host, "python": args.python}]) + "\n")

    cli = [sys.executable, "-m", "edgeprune.cli", "profile", str(artifact), "--target", str(target_file)]
    remote = (
        cli
        + ["--hosts-file", str(hosts)]
        + (["--ssh-config", str(args.ssh_config)] if args.ssh_config else [])
    )

    def p50(command: list[str], report: Path) -> float:
        run = subprocess.run(command + ["--json", str(report)], capture_output=True, text=True)
        if run.returncode not in (0, 3):  # 3: over the target's budget, still a measurement
            sys.exit(f"{' '.join(command)} failed ({run.returncode}):\n{run.stderr[-2000:]}")
        data = json.loads(report.read_text())
        if "hosts" in data:
            host = data["hosts"][0]
            if not host["ok"]:
                sys.exit(f"{args.host}: {host['error']}")
            data = host["report"]
        return float(data["result"]["latency_ms"]["p50"])

    rows = []
    print(f"{'round':>5} {'local p50 ms':>13} {'ssh p50 ms':>11} {'ratio':>6}", flush=True)
    for i in range(args.rounds):
        local = p50(cli, work / f"local{i}.json")
        over_ssh = p50(remote, work / f"ssh{i}.json")
        rows.append({"local_ms": local, "ssh_ms": over_ssh})
        print(f"{i + 1:>5} {local:>13.3f} {over_ssh:>11.3f} {over_ssh / local:>6.3f}", flush=True)
    local_med = statistics.median(r["local_ms"] for r in rows)
    ssh_med = statistics.median(r["ssh_ms"] for r in rows)
    ratio = ssh_med / local_med
    ratios = sorted(r["ssh_ms"] / r["local_ms"] for r in rows)
    paired = statistics.median(ratios)  # each round's two runs are neighbours in time
    print(
        f"median p50: local {local_med:.3f} ms, over SSH {ssh_med:.3f} ms; ratio of medians {ratio:.3f}, "
        f"median of per-round ratios {paired:.3f} (range {ratios[0]:.3f} .. {ratios[-1]:.3f})"
    )
    if args.json:
        out = {
            "host": args.host, "target": target.name, "imgsz": args.imgsz, "threads": args.threads,
            "rounds": rows, "local_median_ms": local_med, "ssh_median_ms": ssh_med, "ratio": ratio, "median_round_ratio": paired,
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
