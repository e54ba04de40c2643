"""Safe checkpoint loading: real checkpoints load, malicious pickles are refused and run nothing."""

from __future__ import annotations

import builtins
import collections
import fractions
import os
import pathlib
import subprocess
import zipfile

import pytest
import torch
from pickle_gadgets import Call
from pickle_gadgets import evil_cfg as _evil_cfg
from pickle_gadgets import inline as _inline
from pickle_gadgets import op_global as _g
from pickle_gadgets import op_text as _s
from pickle_gadgets import torch_zip as _write_raw
from torch import nn

from edgeprune.errors import EdgepruneError, UnsafeCheckpointError
from edgeprune.models.safe_load import load_ultralytics_checkpoint, safe_torch_load

from conftest import run_cli

ultralytics = pytest.importorskip("ultralytics")
from ultralytics.nn.tasks import BaseModel, DetectionModel  # noqa: E402
from ultralytics.utils.checks import check_requirements  # noqa: E402

# --- real checkpoints ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An Ultralytics-format checkpoint written by edgeprune, plus the detector it came from."""
    from edgeprune.models import load_model

    detector = load_model("yolov8n.yaml", nc=6)
    path = detector.save(tmp_path_factory.mktemp("ckpt") / "m.pt")
    return detector, path


def test_edgeprune_checkpoint_loads_with_equal_outputs(saved):
    detector, path = saved
    ckpt = safe_torch_load(path)
    assert isinstance(ckpt["model"], DetectionModel)
    model = load_ultralytics_checkpoint(path)
    assert isinstance(model, DetectionModel) and not model.training
    assert model.task == "detect" and model.pt_path == str(path)
    assert model.args["imgsz"] and next(model.parameters()).dtype == torch.float32
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = detector.module.eval()(x)[0]
        assert torch.equal(model(x)[0], expected)


def test_ultralytics_trainer_checkpoints_load(tmp_path):
    """Checkpoints of Ultralytics' own trainer: the one saved during training (EMA, optimizer state,
    train_args, metrics) and the stripped last.pt/best.pt it leaves at the end."""
    import shutil

    from ultralytics import YOLO

    from edgeprune.data import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", n_train=8, n_val=4, imgsz=64)
    yolo = YOLO("yolov8n.yaml")
    during = tmp_path / "during.pt"
    yolo.add_callback("on_model_save", lambda trainer: shutil.copy(trainer.last, during))
    yolo.train(
        data=str(data), epochs=1, imgsz=64, batch=4, workers=0, plots=False, amp=False, device="cpu",
        project=str(tmp_path / "runs"), name="t", val=False, verbose=False,
    )  # fmt: skip
    weights = tmp_path / "runs" / "t" / "weights"
    assert isinstance(safe_torch_load(during)["optimizer"], dict)
    for path in (during, weights / "last.pt", weights / "best.pt"):
        ckpt = safe_torch_load(path)
        assert {"model", "train_args", "train_results"} <= set(ckpt)
        model = load_ultralytics_checkpoint(path)
        assert isinstance(model, DetectionModel) and model.args["epochs"] == 1
        plain = torch.load(path, map_location="cpu", weights_only=False)
        reference = (plain.get("ema") or plain["model"]).float().eval()
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            assert torch.equal(model(x)[0], reference(x)[0])


def test_shipped_demo_weights_and_legacy_format_load(tmp_path):
    import edgeprune

    demo = pathlib.Path(edgeprune.__file__).parent / "assets" / "demo_baseline.pt"
    assert "state_dict" in safe_torch_load(demo)
    legacy = tmp_path / "legacy.pt"
    torch.save(
        {"model": nn.Sequential(nn.Conv2d(3, 4, 3), nn.SiLU())}, legacy, _use_new_zipfile_serialization=False
    )
    assert isinstance(safe_torch_load(legacy)["model"], nn.Sequential)


def test_plain_data_types_load(tmp_path):
    import argparse
    import datetime
    import types

    import numpy as np

    data = {
        "set": {1, 2},
        "frozen": frozenset({3}),
        "bytes": b"\x00\xff",
        "od": collections.OrderedDict(a=1),
        "path": pathlib.Path("/tmp/x"),
        "date": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "delta": datetime.timedelta(seconds=3),
        "args": argparse.Namespace(lr=0.1),
        "dd": collections.defaultdict(list, a=[1]),
        "misc": (complex(1, 2), slice(1, 5, 2), range(3), bytearray(b"ab"), None, ...),
        "ns": types.SimpleNamespace(a=1),
        "np_scalar": np.float64(0.5),
        "np_int": np.int64(7),
        "np_dtype": np.dtype("float32"),
        "np_array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "size": torch.Size([1, 2]),
        "dtype": torch.float16,
        "tensor": torch.arange(4),
    }
    path = tmp_path / "data.pt"
    torch.save(data, path)
    loaded = safe_torch_load(path)
    assert loaded["np_array"].tolist() == data["np_array"].tolist()
    assert {k: v for k, v in loaded.items() if k not in ("np_array", "tensor")} == {
        k: v for k, v in data.items() if k not in ("np_array", "tensor")
    }
    assert torch.equal(loaded["tensor"], data["tensor"])


# --- malicious pickles ---------------------------------------------------------------------------


def _payloads(marker: pathlib.Path) -> dict:
    cmd = f"touch {marker}"
    hooked = nn.Identity()
    hooked._forward_hooks[0] = DetectionModel  # pickled by reference; would be called on forward
    shadowed = nn.Identity()
    shadowed.float = BaseModel.load  # model.float() would call it
    classy = nn.Identity()
    classy.float = DetectionModel
    return {
        "os.system": (Call(os.system, cmd), ("posix.system", "os.system", "nt.system")),
        "subprocess.Popen": (Call(subprocess.Popen, ["touch", str(marker)]), ("subprocess.Popen",)),
        "eval": (Call(builtins.eval, f"__import__('os').system({cmd!r})"), ("builtins.eval",)),
        "exec": (Call(builtins.exec, f"import os; os.system({cmd!r})"), ("builtins.exec",)),
        # getattr gadgets: a dunder, a lookup on a path instance, a function of an allowed class called
        "getattr-dunder": (Call(Call(getattr, collections.OrderedDict, "__init__"), {}), ("__init__",)),
        "getattr-path-method": (
            Call(Call(getattr, Call(pathlib.PosixPath, str(marker)), "touch")),
            ("touch",),
        ),
        "getattr-model-method": (
            Call(Call(getattr, DetectionModel, "load"), str(marker)),
            ("ultralytics.nn.tasks.BaseModel.load",),
        ),
        # functions of allowed packages
        "check_requirements": (
            Call(check_requirements, "definitely-not-a-package"),
            ("ultralytics.utils.checks.check_requirements",),
        ),
        "torch.hub.load": (Call(torch.hub.load, "evil/repo", "model"), ("torch.hub.load",)),
        "torch.load": (Call(torch.load, str(marker)), ("torch.serialization.load", "torch.load")),
        "namedtuple": (Call(collections.namedtuple, "T", "a"), ("collections.namedtuple",)),
        # an allowed class called with the file's arguments: DetectionModel(cfg) evals cfg["activation"]
        "model-constructor": (
            Call(DetectionModel, _evil_cfg(marker)),
            ("ultralytics.nn.tasks.DetectionModel",),
        ),
        # an allowed rebuild function asked to call something else
        "rebuild-from-type": (
            Call(torch._tensor._rebuild_from_type_v2, DetectionModel, torch.Tensor, (_evil_cfg(marker),), {}),
            ("ultralytics.nn.tasks.DetectionModel",),
        ),
        # modules whose attributes carry a forward hook or replace a method
        "module-hook": (hooked, ("_forward_hooks",)),
        "module-method": (shadowed, ("float",)),
        "module-class": (classy, ("float",)),
    }


PAYLOADS = list(_payloads(pathlib.Path("/x")))


@pytest.mark.parametrize("kind", PAYLOADS)
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, kind):
    marker = tmp_path / "MARKER"
    payload, names = _payloads(marker)[kind]
    path = tmp_path / "malicious.pt"
    torch.save({"model": payload, "epoch": 1}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_torch_load(path)
    message = str(info.value)
    assert any(n in message for n in names), message
    assert str(path) in message and "--trust-checkpoint" in message
    assert not marker.exists()


def test_hand_written_gadgets_are_refused(tmp_path):
    """Opcode sequences a pickler never writes but an attacker can."""
    marker = tmp_path / "MARKER"
    identity = _g("torch.nn.modules.linear", "Identity") + b")\x81"
    model_cls = _g("ultralytics.nn.tasks", "DetectionModel")
    cfg = _inline(_evil_cfg(marker))
    gadgets = {
        # BUILD sets __setstate__ on the instance, the second BUILD would call it with cfg
        "setstate": identity + b"}" + _s("__setstate__") + model_cls + b"sb" + cfg + b"b.",
        # an instance attribute named append, then APPEND would call it with cfg
        "append": identity + b"}" + _s("append") + model_cls + b"sb" + cfg + b"a.",
        # BUILD on a class: would monkey-patch it
        "patch-class": _g("pathlib", "PurePath") + b"N}" + _s("x") + b"K\x01s\x86b.",
    }
    for name, raw in gadgets.items():
        path = _write_raw(tmp_path / f"{name}.pt", b"\x80\x02" + raw)
        with pytest.raises(UnsafeCheckpointError, match="--trust-checkpoint"):
            safe_torch_load(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")  # torch.jit is deprecated
def test_tensor_hooks_and_torchscript_are_refused(tmp_path):
    hooked = tmp_path / "hooked.pt"
    meta = torch.empty(2, device="meta")
    torch.save(Call(torch._utils._rebuild_parameter, meta, False, {0: DetectionModel}), hooked)
    with pytest.raises(UnsafeCheckpointError, match="hooks"):
        safe_torch_load(hooked)

    scripted = tmp_path / "scripted.pt"
    torch.jit.script(nn.Linear(2, 2)).save(str(scripted))
    with pytest.raises(UnsafeCheckpointError, match="TorchScript"):
        safe_torch_load(scripted)
    assert safe_torch_load(scripted, trust=True) is not None


def test_trust_loads_a_benign_class_outside_the_allow_list(tmp_path):
    path = tmp_path / "fraction.pt"
    torch.save({"x": fractions.Fraction(1, 3)}, path)
    with pytest.raises(UnsafeCheckpointError, match="fractions.Fraction"):
        safe_torch_load(path)
    assert safe_torch_load(path, trust=True) == {"x": fractions.Fraction(1, 3)}


def test_trust_really_is_plain_pickle(tmp_path):
    """The opt-out is real: the same file runs its payload when trusted (so the tests above mean something)."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "malicious.pt"
    torch.save({"model": Call(os.system, f"touch {marker}")}, path)
    safe_torch_load(path, trust=True)
    assert marker.exists()


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(EdgepruneError, match="not found"):
        safe_torch_load(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(EdgepruneError, match="not a readable PyTorch checkpoint") as info:
        safe_torch_load(junk)
    assert not isinstance(info.value, UnsafeCheckpointError)
    notmodel = tmp_path / "notmodel.pt"
    torch.save({"model": [1, 2]}, notmodel)
    with pytest.raises(EdgepruneError, match="does not hold a model"):
        load_ultralytics_checkpoint(notmodel)


# --- the command line ------------------------------------------------------------------------------


def test_cli_refuses_malicious_checkpoint(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "malicious.pt"
    torch.save({"model": Call(os.system, f"touch {marker}")}, path)
    base = ("prune", str(path), "--target", "cpu-ort-fp32", "--ratio", "0.5", "--out", str(tmp_path / "out"))
    r = run_cli(*base, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "refusing to load" in r.stderr and "posix.system" in r.stderr and "--trust-checkpoint" in r.stderr
    assert "Traceback" not in r.stderr
    assert not marker.exists()

    r = run_cli("export", str(path), "--target", "cpu-ort-fp32", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 1 and "refusing to load" in r.stderr and not marker.exists()

    # Trusted, loading goes ahead (and fails later: os.system's return value is not a model).
    r = run_cli(*base, "--trust-checkpoint", cwd=tmp_path)
    assert "refusing to load" not in r.stderr
    assert marker.exists()


def test_a_deflated_bomb_is_refused_before_the_adapters_read_it(tmp_path):
    """``load_model`` asks each adapter whether it takes a .pt; none may inflate the archive to see."""
    from edgeprune.models import load_model

    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02N" + b"\x00" * (128 * 2**20) + b".")
        z.writestr("archive/version", "3\n")
    with pytest.raises(UnsafeCheckpointError, match="zip bomb"):
        load_model(path)
    broken = tmp_path / "broken.pt"
    raw = bytearray(path.read_bytes())
    raw[200:260] = bytes(60)  # damage the deflate stream
    broken.write_bytes(bytes(raw))
    with pytest.raises(EdgepruneError):
        load_model(broken)
