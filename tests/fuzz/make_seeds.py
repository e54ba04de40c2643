"""Seed corpora for the fuzzers: one well-formed file per target, so mutations start from the real
format instead of from noise. ``python tests/fuzz/make_seeds.py OUT`` writes OUT/TARGET/seed*."""

from __future__ import annotations

import io
import pickle
import sys
import tempfile
import zipfile
from pathlib import Path


def main(out: Path) -> None:
    import torch
    from torch import nn

    for name in ("checkpoint", "pickle", "onnx", "tflite", "openvino", "target"):
        (out / name).mkdir(parents=True, exist_ok=True)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.SiLU())
    buf = io.BytesIO()
    torch.save({"model": model, "epoch": 3, "train_args": {"imgsz": 64}}, buf)
    (out / "checkpoint" / "seed-module").write_bytes(buf.getvalue())
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        (out / "pickle" / "seed-module").write_bytes(z.read(pkl))
    (out / "pickle" / "seed-dict").write_bytes(
        pickle.dumps({"a": [1, 2.0, "x"], "b": (None, True)}, protocol=2)
    )
    onnx_path = out / "onnx" / "seed-conv"
    torch.onnx.export(model.eval(), torch.rand(1, 3, 8, 8), str(onnx_path), dynamo=False)
    repo = Path(__file__).resolve().parents[2]
    (out / "target" / "seed-ort").write_bytes((repo / "targets" / "cpu-ort-fp32.yaml").read_bytes())
    (out / "target" / "seed-tflite").write_bytes((repo / "targets" / "rpi5-tflite-int8.yaml").read_bytes())
    try:
        import openvino as ov

        xml = Path(tempfile.mkdtemp()) / "m.xml"
        ov.save_model(ov.convert_model(str(onnx_path)), str(xml))
        (out / "openvino" / "seed-conv").write_bytes(xml.read_bytes())
    except ImportError:
        pass
    try:
        import litert_torch

        tfl = Path(tempfile.mkdtemp()) / "m.tflite"
        litert_torch.convert(model.eval(), (torch.rand(1, 3, 8, 8),)).export(str(tfl))
        (out / "tflite" / "seed-conv").write_bytes(tfl.read_bytes())
    except Exception:  # noqa: BLE001 (a seed is optional: the fuzzer also starts from nothing)
        pass


if __name__ == "__main__":
    main(Path(sys.argv[1]))
