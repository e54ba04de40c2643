"""The error contract, case by case: every bad input a user can give the CLI ends with exit 1 (2 for a
usage error), one message naming the file or flag and what was expected, no traceback, no file left
behind and no network used.

Each case runs ``edgeprune.cli.main`` in this process (a traceback at the CLI is an exception escaping
``main`` here), with every internet socket refused and recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgeprune.cli import main

pytest.importorskip("ultralytics")


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: the command line (``{name}`` is replaced by the fixture file ``name`` or by a file
    the case writes), the files it writes first, the exit code and what the message must say."""

    id: str
    argv: str
    says: tuple[str, ...]
    files: tuple[tuple[str, bytes | str], ...] = ()
    code: int = 1


def case(id: str, argv: str, *says: str, code: int = 1, **files: bytes | str) -> Case:
    return Case(id, argv, says, tuple(files.items()), code)


TRUNCATED = "truncated.pt"  # made from the good checkpoint by the fixture
BINARY = bytes(range(256)) * 8
ZIP_NO_PICKLE = "nopickle.pt"
PE = "prune {ckpt} -t cpu-ort-fp32 --ratio 0.3 --out {out}"  # a prune that would succeed
EX = "export {ckpt} -t cpu-ort-fp32 --imgsz 64 --out {out}"  # an export that would succeed
PR = "profile {onnx} -t cpu-ort-fp32"


def _data_yaml(root: str, **fields: object) -> str:
    import yaml

    return yaml.safe_dump({"path": root, "train": "images/train", "val": "images/val", "names": {0: "a", 1: "b"}}
                          | fields)  # fmt: skip


CASES = [
    # --- the command line itself (usage errors: exit 2) ---------------------------------------------------
    case("no-command", "", "COMMAND", code=2),
    case("unknown-command", "shrink {ckpt}", "invalid choice", code=2),
    case("prune-no-target", "prune {ckpt}", "--target", code=2),
    case("prune-ratio-text", "prune {ckpt} -t cpu-ort-fp32 --ratio half", "--ratio", code=2),
    case("prune-epochs-text", PE + " --epochs many", "--epochs", code=2),
    case("prune-allocation", PE + " --allocation random", "--allocation", code=2),
    case("prune-distill-mode", "prune {ckpt} -t cpu-ort-fp32 --distill loud", "--distill", code=2),
    case("prune-margin-text", "prune {ckpt} -t cpu-ort-fp32 --margin lots", "--margin", "'auto'", code=2),
    case("prune-unknown-flag", PE + " --sped 2", "--sped", code=2),
    case("analyze-no-data", "analyze {ckpt} -t cpu-ort-fp32", "--data", code=2),
    case(
        "analyze-ratios-text", "analyze {ckpt} -t cpu-ort-fp32 --data {data} --ratios a,b", "--ratios", code=2
    ),
    case("export-calib-images-text", EX + " --calib-images x", "--calib-images", code=2),
    case("profile-no-artifact", "profile -t cpu-ort-fp32", "artifact", code=2),
    case("data-no-out", "data", "--out", code=2),
    case("data-preset", "data --out {out} --preset impossible", "--preset", code=2),
    case("targets-no-action", "targets", "ACTION", code=2),
    case("report-no-run", "report", "DIR_OR_JSON", code=2),
    # --- values out of range (exit 1, the flag named) ---------------------------------------------------
    case("ratio-over-one", "prune {ckpt} -t cpu-ort-fp32 --ratio 1.5 --out {out}", "--ratio", "1.5"),
    case("ratio-negative", "prune {ckpt} -t cpu-ort-fp32 --ratio -0.2 --out {out}", "--ratio"),
    case("ratio-one", "prune {ckpt} -t cpu-ort-fp32 --ratio 1 --out {out}", "--ratio"),
    case("ratio-and-speedup", PE + " --speedup 2", "--ratio", "--speedup"),
    case("ratio-and-budget", PE + " --budget-ms 5", "--ratio", "--budget-ms"),
    case("ratio-and-actions", PE + " --actions depth", "--actions"),
    case("ratio-and-distill", PE + " --distill", "--distill"),
    case("epochs-negative", PE + " --epochs -1", "--epochs"),
    case("epochs-without-data", PE + " --epochs 2", "--epochs", "--data"),
    case("batch-zero", PE + " --batch 0 --data {data}", "--batch"),
    case("imgsz-zero", PE + " --imgsz 0", "--imgsz"),
    case("imgsz-odd", PE + " --imgsz 100", "--imgsz", "32"),
    case("imgsz-negative", EX.replace("--imgsz 64", "--imgsz -64"), "--imgsz"),
    case("max-layer-ratio", PE + " --max-layer-ratio 1.2", "--max-layer-ratio"),
    case("importance-unknown", PE + " --importance magic", "--importance", "magic", "l2"),
    case("speedup-zero", "prune {ckpt} -t cpu-ort-fp32 --speedup 0 --out {out}", "--speedup"),
    case("speedup-below-one", "prune {ckpt} -t cpu-ort-fp32 --speedup 0.5 --out {out}", "--speedup"),
    case("budget-negative", "prune {ckpt} -t cpu-ort-fp32 --budget-ms -3 --out {out}", "--budget-ms"),
    case(
        "budget-and-speedup",
        "prune {ckpt} -t cpu-ort-fp32 --budget-ms 3 --speedup 2 --out {out}",
        "--budget-ms",
        "--speedup",
    ),  # fmt: skip
    case("steps-zero", "prune {ckpt} -t cpu-ort-fp32 --speedup 2 --steps 0 --out {out}", "--steps"),
    case("margin-over-one", "prune {ckpt} -t cpu-ort-fp32 --speedup 2 --margin 1.5 --out {out}", "--margin"),
    case(
        "actions-unknown",
        "prune {ckpt} -t cpu-ort-fp32 --speedup 2 --actions width,holes --out {out}",
        "--actions",
        "holes",
    ),  # fmt: skip
    case(
        "step-epochs-negative",
        "prune {ckpt} -t cpu-ort-fp32 --speedup 2 --step-epochs -2 --out {out}",
        "--step-epochs",
    ),  # fmt: skip
    case("dry-run-search", "prune {ckpt} -t cpu-ort-fp32 --speedup 2 --dry-run --out {out}", "--dry-run"),
    case(
        "resume-nothing",
        "prune {ckpt} -t cpu-ort-fp32 --speedup 2 --resume --out {out}",
        "--resume",
        "state.json",
    ),  # fmt: skip
    case(
        "resume-ratio-without-epochs",
        "prune {ckpt} -t cpu-ort-fp32 --ratio 0.2 --resume --out {out}",
        "--resume",
        "nothing to resume",
    ),  # fmt: skip
    case(
        "teacher-missing",
        "prune {ckpt} -t cpu-ort-fp32 --speedup 2 --teacher {tmp}/no.pt --data {data} --epochs 1 --out {out}",
        "no.pt",
    ),  # fmt: skip
    case(
        "sensitivity-missing",
        "prune {ckpt} -t cpu-ort-fp32 --speedup 2 --sensitivity {tmp}/a.json --out {out}",
        "a.json",
    ),  # fmt: skip
    case(
        "sensitivity-broken",
        "prune {ckpt} -t cpu-ort-fp32 --speedup 2 --sensitivity {bad.json} --out {out}",
        "bad.json",
        **{"bad.json": "{not json"},
    ),  # fmt: skip
    case(
        "sensitivity-foreign",
        "prune {ckpt} -t cpu-ort-fp32 --speedup 2 --sensitivity {s.json} --out {out}",
        "s.json",
        **{"s.json": "[1, 2, 3]"},
    ),  # fmt: skip
    case(
        "analyze-ratio-over-one",
        "analyze {ckpt} -t cpu-ort-fp32 --data {data} --ratios 0.2,1.4 --out {out}",
        "--ratios",
    ),  # fmt: skip
    case("calib-images-zero", EX + " --calib-images 0 -t cpu-ort-int8 --calib {data}", "--calib-images"),
    case("max-drop-negative", EX + " --max-drop -1 --data {data}", "--max-drop"),
    case(
        "max-drop-no-data",
        EX.replace("cpu-ort-fp32", "cpu-ort-int8") + " --calib {data} --max-drop 1",
        "--max-drop",
        "--data",
    ),  # fmt: skip
    case("end2end-nms-head", EX + " --end2end", "--end2end"),
    case("data-n-train-zero", "data --out {out} --n-train 0", "--n-train"),
    case("data-imgsz-tiny", "data --out {out} --imgsz 8", "--imgsz"),
    # --- models and checkpoints ------------------------------------------------------------------------
    case("ckpt-missing", "prune {tmp}/nothing.pt -t cpu-ort-fp32 --ratio 0.3 --out {out}", "nothing.pt"),
    case(
        "ckpt-truncated",
        "prune {truncated.pt} -t cpu-ort-fp32 --ratio 0.3 --out {out}",
        "truncated.pt",
        "checkpoint",
    ),  # fmt: skip
    case(
        "ckpt-empty",
        "prune {empty.pt} -t cpu-ort-fp32 --ratio 0.3 --out {out}",
        "empty.pt",
        **{"empty.pt": b""},
    ),
    case(
        "ckpt-random",
        "prune {rand.pt} -t cpu-ort-fp32 --ratio 0.3 --out {out}",
        "rand.pt",
        **{"rand.pt": BINARY},
    ),
    case("ckpt-text", "prune {t.pt} -t cpu-ort-fp32 --ratio 0.3 --out {out}", "t.pt", **{"t.pt": "hello\n"}),
    case("ckpt-zip-no-pickle", "prune {nopickle.pt} -t cpu-ort-fp32 --ratio 0.3 --out {out}", "nopickle.pt"),
    case("ckpt-list", "prune {list.pt} -t cpu-ort-fp32 --ratio 0.3 --out {out}", "list.pt"),
    case(
        "ckpt-no-model", "prune {nomodel.pt} -t cpu-ort-fp32 --ratio 0.3 --out {out}", "nomodel.pt", "model"
    ),
    case("ckpt-a-folder", "prune {tmp} -t cpu-ort-fp32 --ratio 0.3 --out {out}", "{tmp}"),
    case(
        "ckpt-unknown-suffix",
        "prune {m.bin} -t cpu-ort-fp32 --ratio 0.3 --out {out}",
        "m.bin",
        **{"m.bin": BINARY},
    ),
    case("ckpt-onnx-to-prune", "prune {onnx} -t cpu-ort-fp32 --ratio 0.3 --out {out}", ".onnx"),
    case("config-unknown", "prune yolov99n.yaml -t cpu-ort-fp32 --ratio 0.3 --out {out}", "yolov99n.yaml"),
    case(
        "config-broken",
        "prune {m.yaml} -t cpu-ort-fp32 --ratio 0.3 --out {out}",
        "m.yaml",
        **{"m.yaml": "backbone: [[-1, 1, Conv\n"},
    ),  # fmt: skip
    case(
        "config-unknown-layer",
        "prune {m.yaml} -t cpu-ort-fp32 --ratio 0.3 --out {out}",
        "m.yaml",
        **{"m.yaml": "nc: 2\nbackbone: [[-1, 1, NoSuchLayer, [8]]]\nhead: [[-1, 1, Detect, [nc]]]\n"},
    ),  # fmt: skip
    case(
        "torchvision-unknown",
        "prune torchvision:resnet9000 -t cpu-ort-fp32 --ratio 0.3 --out {out}",
        "resnet9000",
    ),  # fmt: skip
    case(
        "torchvision-with-data",
        "prune torchvision:fasterrcnn_mobilenet_v3_large_fpn -t cpu-ort-fp32 "
        "--ratio 0.3 --data {data} --out {out}",
        "--data",
    ),  # fmt: skip
    case(
        "teacher-truncated",
        "prune {ckpt} -t cpu-ort-fp32 --speedup 2 --teacher {truncated.pt} --data {data} --out {out}",
        "truncated.pt",
    ),  # fmt: skip
    # --- data.yaml and its folders --------------------------------------------------------------------
    case("data-missing", PE + " --data {tmp}/nodata.yaml", "nodata.yaml"),
    case("data-broken-yaml", PE + " --data {d.yaml}", "d.yaml", **{"d.yaml": "names: [a, b\ntrain: x\n"}),
    case("data-binary", PE + " --data {d.yaml}", "d.yaml", **{"d.yaml": BINARY}),
    case("data-empty", PE + " --data {d.yaml}", "d.yaml", **{"d.yaml": ""}),
    case("data-a-list", PE + " --data {d.yaml}", "d.yaml", **{"d.yaml": "- a\n- b\n"}),
    case(
        "data-no-folders",
        PE + " --data {d.yaml}",
        "d.yaml",
        "images",
        **{"d.yaml": _data_yaml("/nonexistent")},
    ),
    case(
        "data-no-names",
        PE + " --data {d.yaml}",
        "d.yaml",
        "names",
        **{"d.yaml": "path: /tmp\ntrain: images/train\nval: images/val\n"},
    ),  # fmt: skip
    case(
        "data-no-val",
        PE + " --data {d.yaml}",
        "d.yaml",
        "val",
        **{"d.yaml": "path: /tmp\ntrain: x\nnames: [a]\n"},
    ),
    case("data-a-folder", PE + " --data {tmp}", "{tmp}"),
    case(
        "data-download-key",
        PE + " --data {d.yaml}",
        "d.yaml",
        **{"d.yaml": _data_yaml("/nonexistent", download="https://example.com/data.zip")},
    ),  # fmt: skip
    case("data-empty-images", PE + " --data {d.yaml}", "d.yaml", **{"d.yaml": "<empty-dataset>"}),
    case("data-nc-mismatch", PE + " --data {d.yaml}", "d.yaml", **{"d.yaml": "<nc-mismatch>"}),
    # --- target YAML ---------------------------------------------------------------------------------
    case("target-unknown-name", "prune {ckpt} -t cpu-ort-fp64 --ratio 0.3 --out {out}", "cpu-ort-fp64"),
    case("target-missing-file", "prune {ckpt} -t {tmp}/t.yaml --ratio 0.3 --out {out}", "t.yaml"),
    case("target-binary", "prune {ckpt} -t {t.yaml} --ratio 0.3 --out {out}", "t.yaml", **{"t.yaml": BINARY}),
    case(
        "target-broken",
        "prune {ckpt} -t {t.yaml} --ratio 0.3 --out {out}",
        "t.yaml",
        "line",
        **{"t.yaml": "name: x\nruntime: [onnxruntime\n"},
    ),  # fmt: skip
    case("target-empty", "targets validate {t.yaml}", "t.yaml", **{"t.yaml": ""}),
    case("target-list", "targets validate {t.yaml}", "t.yaml", **{"t.yaml": "- name: x\n"}),
    case("target-binary-validate", "targets validate {t.yaml}", "t.yaml", **{"t.yaml": BINARY}),
    case(
        "target-latin1",
        "targets validate {t.yaml}",
        "t.yaml",
        **{"t.yaml": "name: caf\xe9\n".encode("latin-1")},
    ),
    case(
        "target-unknown-key",
        "targets validate {t.yaml}",
        "t.yaml",
        "speed",
        **{"t.yaml": "<target:speed: 3>"},
    ),
    case(
        "target-runtime",
        "targets validate {t.yaml}",
        "t.yaml",
        "runtime",
        **{"t.yaml": "<target:runtime: onnx>"},
    ),
    case(
        "target-imgsz-text",
        "targets validate {t.yaml}",
        "t.yaml",
        "imgsz",
        **{"t.yaml": "<target:imgsz: big>"},
    ),
    case(
        "target-imgsz-odd",
        "targets validate {t.yaml}",
        "t.yaml",
        "imgsz",
        **{"t.yaml": "<target:imgsz: 100>"},
    ),
    case(
        "target-threads-zero",
        "targets validate {t.yaml}",
        "t.yaml",
        "threads",
        **{"t.yaml": "<target:threads: 0>"},
    ),
    case(
        "target-budget-neg",
        "targets validate {t.yaml}",
        "t.yaml",
        "latency_ms",
        **{"t.yaml": "<target:budget: {latency_ms: -1, percentile: p50}>"},
    ),  # fmt: skip
    case(
        "target-percentile",
        "targets validate {t.yaml}",
        "t.yaml",
        "percentile",
        **{"t.yaml": "<target:budget: {latency_ms: 5, percentile: p42}>"},
    ),  # fmt: skip
    case(
        "target-precision",
        "targets validate {t.yaml}",
        "t.yaml",
        "precision",
        **{"t.yaml": "<target:precision: int4>"},
    ),
    case(
        "target-duplicate-key",
        "targets validate {t.yaml}",
        "t.yaml",
        "imgsz",
        **{"t.yaml": "<target+:imgsz: 320>"},
    ),
    case(
        "target-int8-uncalibrated",
        "targets validate {t.yaml}",
        "t.yaml",
        "calibration",
        **{"t.yaml": "<target:precision: int8>"},
    ),  # fmt: skip
    case("targets-show-unknown", "targets show cpu-nothing", "cpu-nothing"),
    case("targets-validate-missing", "targets validate {tmp}/none.yaml", "none.yaml"),
    case("targets-validate-folder", "targets validate {tmp}", "{tmp}"),
    # --- calibration recipes and images ---------------------------------------------------------------
    case("recipe-unknown", EX + " -t cpu-ort-int8 --calib {data} --recipe no-such-recipe", "no-such-recipe"),
    case(
        "recipe-broken",
        EX + " -t cpu-ort-int8 --calib {data} --recipe {r.yaml}",
        "r.yaml",
        **{"r.yaml": "images: [\n"},
    ),  # fmt: skip
    case(
        "recipe-binary",
        EX + " -t cpu-ort-int8 --calib {data} --recipe {r.yaml}",
        "r.yaml",
        **{"r.yaml": BINARY},
    ),
    case(
        "recipe-unknown-key",
        EX + " -t cpu-ort-int8 --calib {data} --recipe {r.yaml}",
        "r.yaml",
        "pictures",
        **{"r.yaml": "name: r\nruntime: onnxruntime\npictures: 3\n"},
    ),  # fmt: skip
    case("calib-missing", EX.replace("cpu-ort-fp32", "cpu-ort-int8") + " --calib {tmp}/noimages", "noimages"),
    case("calib-empty-folder", EX.replace("cpu-ort-fp32", "cpu-ort-int8") + " --calib {empty/}", "empty"),
    case(
        "calib-no-images",
        EX.replace("cpu-ort-fp32", "cpu-ort-int8") + " --calib {txt/}",
        "txt",
        **{"txt/a.txt": "x"},
    ),  # fmt: skip
    case(
        "calib-corrupt-image",
        EX.replace("cpu-ort-fp32", "cpu-ort-int8") + " --calib {img/}",
        "bad.jpg",
        **{"img/bad.jpg": BINARY},
    ),  # fmt: skip
    case("calib-none-int8", EX.replace("cpu-ort-fp32", "cpu-ort-int8"), "--calib"),
    # --- artifacts -----------------------------------------------------------------------------------
    case("artifact-missing", "profile {tmp}/none.onnx -t cpu-ort-fp32", "none.onnx"),
    case("onnx-text", "profile {bad.onnx} -t cpu-ort-fp32", "bad.onnx", **{"bad.onnx": "not a model\n"}),
    case("onnx-empty", "profile {e.onnx} -t cpu-ort-fp32", "e.onnx", **{"e.onnx": b""}),
    case("onnx-random", "profile {r.onnx} -t cpu-ort-fp32", "r.onnx", **{"r.onnx": BINARY}),
    case("onnx-truncated", "profile {cut.onnx} -t cpu-ort-fp32", "cut.onnx"),
    case("onnx-a-folder", "profile {dir.onnx/} -t cpu-ort-fp32", "dir.onnx"),
    case(
        "tflite-text",
        "profile {bad.tflite} -t rpi5-tflite-int8",
        "bad.tflite",
        **{"bad.tflite": "not a model\n"},
    ),
    case("tflite-random", "profile {r.tflite} -t rpi5-tflite-int8", "r.tflite", **{"r.tflite": BINARY}),
    case("ir-text", "profile {m.xml} -t cpu-openvino-int8", "m.xml", **{"m.xml": "<net>", "m.bin": b""}),
    case(
        "ir-no-bin",
        "profile {n.xml} -t cpu-openvino-int8",
        "n.bin",
        **{"n.xml": "<?xml version='1.0'?><net/>"},
    ),
    case("artifact-suffix", "profile {m.pb} -t cpu-ort-fp32", "m.pb", **{"m.pb": BINARY}),
    case("artifact-wrong-target", "profile {onnx} -t rpi5-tflite-int8", ".onnx", "tflite"),
    case("end-to-end-no-images", PR + " --end-to-end", "--images"),
    case("end-to-end-no-frames", PR + " --end-to-end --images {empty/}", "empty"),
    case("end-to-end-corrupt", PR + " --end-to-end --images {img/}", "bad.jpg", **{"img/bad.jpg": BINARY}),
    # --- hosts ---------------------------------------------------------------------------------------
    case("hosts-file-missing", PR + " --hosts-file {tmp}/hosts.txt", "hosts.txt"),
    case("hosts-file-binary", PR + " --hosts-file {h.yaml}", "h.yaml", **{"h.yaml": BINARY}),
    case("hosts-file-broken", PR + " --hosts-file {h.yaml}", "h.yaml", **{"h.yaml": "- {host: a\n"}),
    case("hosts-file-empty", PR + " --hosts-file {h.txt}", "h.txt", **{"h.txt": "\n# nothing\n"}),
    case(
        "hosts-file-no-host", PR + " --hosts-file {h.yaml}", "h.yaml", "host", **{"h.yaml": "- {python: p}\n"}
    ),
    case(
        "hosts-file-unknown-key",
        PR + " --hosts-file {h.yaml}",
        "h.yaml",
        "pyhton",
        **{"h.yaml": "- {host: a, pyhton: p}\n"},
    ),  # fmt: skip
    case("host-bad-port", PR + " --host user@box:port", "user@box:port"),
    case(
        "hosts-file-a-mapping", PR + " --hosts-file {h.yaml}", "h.yaml", "list", **{"h.yaml": "{host: a}\n"}
    ),
    case("ssh-config-missing", PR + " --host a --ssh-config {tmp}/nossh", "nossh"),
    # --- pipeline recipes ----------------------------------------------------------------------------
    case("run-missing", "run {tmp}/recipe.yaml", "recipe.yaml"),
    case("run-broken", "run {p.yaml}", "p.yaml", "line", **{"p.yaml": "model: [x\n"}),
    case("run-binary", "run {p.yaml}", "p.yaml", **{"p.yaml": BINARY}),
    case("run-empty", "run {p.yaml}", "p.yaml", **{"p.yaml": ""}),
    case(
        "run-unknown-key",
        "run {p.yaml}",
        "p.yaml",
        "modle",
        **{"p.yaml": "modle: a.pt\ntarget: cpu-ort-fp32\n"},
    ),
    case("run-no-target", "run {p.yaml}", "p.yaml", "target", **{"p.yaml": "model: yolov8n.yaml\n"}),
    case(
        "run-ratio-text",
        "run {p.yaml}",
        "p.yaml",
        "ratio",
        **{"p.yaml": "model: yolov8n.yaml\ntarget: cpu-ort-fp32\nprune: {ratio: lots}\n"},
    ),  # fmt: skip
    case(
        "run-prune-and-search",
        "run {p.yaml}",
        "p.yaml",
        "search",
        **{
            "p.yaml": "model: yolov8n.yaml\ntarget: cpu-ort-fp32\nprune: {ratio: 0.3}\nsearch: {speedup: 2}\n"
        },
    ),  # fmt: skip
    case(
        "run-model-missing",
        "run {p.yaml}",
        "nothing.pt",
        **{"p.yaml": "model: nothing.pt\ntarget: cpu-ort-fp32\nprune: {ratio: 0.3}\nout: o\n"},
    ),  # fmt: skip
    case(
        "run-target-missing",
        "run {p.yaml}",
        "cpu-ort-fp64",
        **{"p.yaml": "model: yolov8n.yaml\ntarget: cpu-ort-fp64\nprune: {ratio: 0.3}\nout: o\n"},
    ),  # fmt: skip
    # --- reports -------------------------------------------------------------------------------------
    case("report-missing", "report {tmp}/norun", "norun"),
    case("report-empty-folder", "report {empty/}", "empty", "report.json"),
    case("report-broken-json", "report {r/report.json}", "report.json", **{"r/report.json": "{oops"}),
    case("report-json-list", "report {r/report.json}", "report.json", **{"r/report.json": "[]"}),
    case("report-json-binary", "report {r/report.json}", "report.json", **{"r/report.json": BINARY}),
    case("report-foreign-json", "report {r/report.json}", "report.json", **{"r/report.json": '{"hello": 1}'}),
    # --- output paths --------------------------------------------------------------------------------
    case(
        "out-is-a-file", "prune {ckpt} -t cpu-ort-fp32 --ratio 0.3 --out {afile}", "afile", **{"afile": "x"}
    ),
    case(
        "out-under-a-file",
        "prune {ckpt} -t cpu-ort-fp32 --ratio 0.3 --out {afile}/sub",
        "afile",
        **{"afile": "x"},
    ),
    case("out-in-proc", "prune {ckpt} -t cpu-ort-fp32 --ratio 0.3 --out /proc/nope", "/proc/nope"),
    case("export-out-in-proc", "export {ckpt} -t cpu-ort-fp32 --imgsz 64 --out /proc/nope", "/proc/nope"),
    case(
        "export-out-a-file",
        "export {ckpt} -t cpu-ort-fp32 --imgsz 64 --out {afile}",
        "afile",
        **{"afile": "x"},
    ),
    case(
        "analyze-out-a-file",
        "analyze {ckpt} -t cpu-ort-fp32 --data {data} --out {afile}",
        "afile",
        **{"afile": "x"},
    ),  # fmt: skip
    case("profile-json-in-proc", PR + " --json /proc/nope/report.json", "/proc/nope"),
    case("profile-json-a-folder", PR + " --json {tmp}", "{tmp}"),
    case("report-out-in-proc", "report {run} --out /proc/nope/r.html", "/proc/nope"),
    case("data-out-a-file", "data --out {afile}", "afile", **{"afile": "x"}),
    case(
        "data-out-not-empty",
        "data --out {full/}",
        "full",
        "--overwrite",
        **{"full/data.yaml": "names: [a]\n"},
    ),
    case("out-locked", "prune {ckpt} -t cpu-ort-fp32 --ratio 0.3 --out {locked/}", "locked", "another"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_data):
    """Good inputs the bad ones are made from: a checkpoint, its ONNX export and a finished run."""
    import torch

    from edgeprune.api import export
    from edgeprune.models import load_model

    root = tmp_path_factory.mktemp("good")
    ckpt = load_model("yolov8n.yaml", nc=6).save(root / "m.pt")  # the classes of tiny_data
    onnx = export(ckpt, "cpu-ort-fp32", imgsz=64, out=root / "export", stem="m").artifact
    run = root / "run"
    from edgeprune.api import profile

    profile(onnx, "cpu-ort-fp32", json_path=run / "report.json")
    raw = Path(ckpt).read_bytes()
    (root / TRUNCATED).write_bytes(raw[: len(raw) // 2])
    Path(root / "cut.onnx").write_bytes(Path(onnx).read_bytes()[:5000])
    with zipfile.ZipFile(root / ZIP_NO_PICKLE, "w") as z:
        z.writestr("archive/version", "3\n")
    torch.save([1, 2, 3], root / "list.pt")
    torch.save({"epoch": 3}, root / "nomodel.pt")
    return {"ckpt": ckpt, "onnx": onnx, "data": tiny_data, "run": run, "root": root}


TARGET_BASE = Path(__file__).resolve().parents[1] / "targets" / "cpu-ort-fp32.yaml"


def _special(text: str, tmp: Path, files: dict) -> str:
    """Contents that need the fixtures: a variant of a shipped target, of the tiny dataset."""
    import yaml

    if text.startswith(("<target:", "<target+:")):
        twice, line = text.startswith("<target+:"), text.split(":", 1)[1][:-1]
        base = TARGET_BASE.read_text()
        if twice:
            return base + line + "\n"  # a key given twice
        spec = yaml.safe_load(base)
        spec.update(yaml.safe_load(line))
        return yaml.safe_dump(spec, sort_keys=False)
    if text == "<empty-dataset>":
        for split in ("train", "val"):
            (tmp / "ds" / "images" / split).mkdir(parents=True, exist_ok=True)
        return _data_yaml(str(tmp / "ds"))
    if text == "<nc-mismatch>":
        spec = yaml.safe_load(Path(files["data"]).read_text())
        spec["names"] = {i: f"c{i}" for i in range(7)}
        spec.setdefault("path", str(Path(files["data"]).parent))
        return yaml.safe_dump(spec)
    return text


def _fill(c: Case, tmp: Path, files: dict) -> list[str]:
    root = files["root"]
    names = {"ckpt": files["ckpt"], "onnx": files["onnx"], "data": files["data"], "run": files["run"]}
    names |= {
        "tmp": tmp,
        "out": tmp / "out",
        TRUNCATED: root / TRUNCATED,
        ZIP_NO_PICKLE: root / ZIP_NO_PICKLE,
    }
    names |= {"list.pt": root / "list.pt", "nomodel.pt": root / "nomodel.pt", "cut.onnx": root / "cut.onnx"}
    for rel, content in c.files:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = _special(content, tmp, files).encode()
        path.write_bytes(content)
        names[rel] = path
        names[rel.split("/")[0] + "/" if "/" in rel else rel] = path.parent if "/" in rel else path
    for ref in re.findall(r"\{([^}]+)\}", c.argv):
        if ref not in names and ref.endswith("/"):  # a folder the case wants to exist
            (tmp / ref).mkdir(parents=True, exist_ok=True)
            names[ref] = tmp / ref.rstrip("/")
    argv = re.sub(r"\{([^}]+)\}", lambda m: str(names[m.group(1)]), c.argv)
    return argv.split()


HOLDER = (
    "import sys, time; from edgeprune.files import OutputLock; OutputLock(sys.argv[1]).acquire(); "
    "print('held', flush=True); time.sleep(120)"
)


@contextlib.contextmanager
def _held(folder: Path):
    """``folder`` locked by another live process, as a run in progress holds its output folder."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def no_network(monkeypatch):
    """Every internet socket operation is refused and recorded."""
    tried: list[str] = []

    def refuse(what):
        def refused(*args, **kwargs):
            tried.append(f"{what} {args[:2]!r}")
            raise OSError(f"network disabled for this test ({what})")

        return refused

    connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            return refuse("connect")(address)
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    for name in ("getaddrinfo", "gethostbyname", "create_connection"):
        monkeypatch.setattr(socket, name, refuse(name))
    return tried


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_error(c, files, tmp_path, capsys, no_network, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = _fill(c, tmp_path, files)
    before = _listing(tmp_path)
    with _held(tmp_path / "locked") if c.id == "out-locked" else contextlib.nullcontext():
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's usage errors
            code = e.code
    err = capsys.readouterr().err
    assert code == c.code, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if re.match(r"(edgeprune[ a-z]*: )?error: ", line)]
    assert lines, err
    message = err
    for expected in c.says:
        expected = expected.replace("{tmp}", str(tmp_path))
        assert expected in message, f"{expected!r} not in:\n{err}"
    left = _listing(tmp_path) - before - {"out"}
    assert not {p for p in left if not p.startswith("locked")}, f"left behind: {sorted(left)}"
    assert not _listing(tmp_path / "out") - before, "the output folder was written"
    assert not no_network, no_network


def test_the_corpus_is_large_and_distinct():
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({(c.argv, c.files) for c in CASES}) == len(CASES)
    assert os.path.exists(TARGET_BASE)
