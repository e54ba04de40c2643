"""Coverage-guided fuzzing of the file loaders, long: executions and findings per target.

    .venv/bin/python benchmarks/fuzz.py [--seconds 600] [--targets checkpoint pickle ...]
        [--json benchmarks/results/fuzz.json]

Each target of ``tests/fuzz/fuzz_targets.py`` runs for ``--seconds`` (libFuzzer's -max_total_time),
one after the other on one core, from the seed corpus ``tests/fuzz/make_seeds.py`` writes, with a
fixed seed. A finding is an exception other than edgeprune's own error types (collected, distinct by
type and place, the run going on) or a crash of the process (counted; libFuzzer stops there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FUZZ = REPO / "tests" / "fuzz"
TARGETS = ["checkpoint", "pickle", "onnx", "tflite", "openvino", "target"]


def run_target(name: str, seconds: int, seeds: Path, work: Path) -> dict:
    corpus = work / f"corpus-{name}"
    corpus.mkdir(parents=True, exist_ok=True)
    findings = work / f"findings-{name}.jsonl"
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, str(FUZZ / "fuzz_targets.py"), name, f"-max_total_time={seconds}", "-seed=1",
         f"-artifact_prefix={work}/crash-{name}-", "-print_final_stats=1", str(corpus), str(seeds / name)],
        capture_output=True, text=True, errors="replace", env={**os.environ, "FUZZ_FINDINGS": str(findings)}, cwd=work,
    )  # fmt: skip
    log = r.stdout + r.stderr
    done = re.findall(r"Done (\d+) runs in (\d+) second", log)
    stat = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    executions = int(done[-1][0]) if done else int(stat[-1]) if stat else None
    cov = re.findall(r"cov: (\d+)", log)
    distinct = [json.loads(line) for line in findings.read_text().splitlines()] if findings.exists() else []
    crashed = r.returncode != 0
    return {
        "target": name,
        "seconds": round(time.perf_counter() - t0, 1),
        "executions": executions,
        "coverage_edges": int(cov[-1]) if cov else None,
        "corpus_files": len(list(corpus.iterdir())),
        "findings": distinct,
        "crash": crashed,
        "crash_tail": log.strip().splitlines()[-12:] if crashed else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--targets", nargs="+", default=TARGETS, choices=TARGETS)
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "fuzz.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeprune-fuzz-bench-"))
    seeds = work / "seeds"
    subprocess.run([sys.executable, str(FUZZ / "make_seeds.py"), str(seeds)], check=True, capture_output=True)
    rows = []
    for name in args.targets:
        row = run_target(name, args.seconds, seeds, work)
        rows.append(row)
        print(f"{name}: {row['executions']} executions in {row['seconds']} s, {len(row['findings'])} findings, "
              f"crash: {row['crash']}", flush=True)  # fmt: skip
    from importlib.metadata import version

    import atheris  # noqa: F401 (its version, for the record)

    result = {
        "benchmark": "fuzz",
        "seconds_per_target": args.seconds,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "versions": {
            p: version(p) for p in ("atheris", "torch", "onnxruntime", "openvino", "ai-edge-litert")
        },
        "targets": rows,
        "total_executions": sum(r["executions"] or 0 for r in rows),
        "total_findings": sum(len(r["findings"]) + r["crash"] for r in rows),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
