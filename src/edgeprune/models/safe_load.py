"""Checkpoint loading that runs no code from the file.

A ``.pt`` checkpoint is a pickle, and unpickling can call any function the file names
(``os.system``, ``eval``...). Ultralytics checkpoints hold whole ``nn.Module`` objects, so
``torch.load(weights_only=True)`` cannot read them without an allow-list, and an allow-list of
classes is not enough there: torch's restricted unpickler calls an allowed *class* when the
pickle asks it to (REDUCE), which runs its constructor; ``DetectionModel(cfg)`` evaluates the
``activation`` string of ``cfg``, so allowing that one class lets a file run a shell command.

So edgeprune unpickles with its own restricted unpickler, plugged into ``torch.load`` through
``pickle_module`` (torch still reads the zip archive and the tensor storages). It separates what a
pickle may *name* from what it may *call*:

* names (GLOBAL): only from allowed modules, and only objects of these kinds: ``nn.Module``
  subclasses from ``torch.nn``, ``torch.ao.nn``, Ultralytics (``ultralytics.nn``, ``.utils``,
  ``.models``; not the ``YOLO``/``Model`` wrappers), torchvision (``.models``, ``.ops``) and
  edgeprune; Ultralytics' loss/assigner classes and torchvision's box-coder helpers; edgeprune
  dataclasses and enums; numpy scalar and dtype classes; torch dtypes and layouts; the entries
  of the explicit table below. Functions and modules are refused, whatever package they are in
  (``torch.hub.load``, ``ultralytics.utils.checks.check_requirements``, ``os.system``).
* calls (REDUCE, INST/OBJ): only the explicit table's constructors of plain data (containers,
  paths, dates, namespaces, ``torch.Size``/``device``, numpy scalars and arrays) and torch's
  tensor-rebuild functions (checked: no backward hooks, no foreign rebuild function). A class
  such as ``DetectionModel`` is only ever *created empty* (NEWOBJ, ``cls.__new__``, no
  ``__init__``) and then given its attributes (BUILD), which is how ``torch.save`` writes modules.
* ``builtins.getattr``, which protocol-2 pickles use for ``Detect.forward`` and enum members,
  is replaced by a guarded version returning only public plain functions of allowed classes,
  bound methods of allowed modules or enum members.
* the pickle cannot reach an object's methods through attributes it set itself: ``__setstate__``
  is looked up on the type, items are appended only to real lists and sets, state cannot set
  dunder names, and classes, functions and modules cannot be changed.
* after loading, every ``nn.Module`` is checked: no hooks, children are modules, no class other
  than an allowed layer type stored as an attribute, no callable instance attribute shadowing a
  method (except the module's own bound method, as ``m.forward = m.forward_fuse`` leaves).

Anything else raises ``UnsafeCheckpointError`` naming the file, the offending ``module.name`` and
``--trust-checkpoint``. ``trust=True`` loads with plain ``torch.load(weights_only=False)``.

Old module paths of Ultralytics checkpoints (``ultralytics.yolo.*``, YOLOv9's ``Silence``,
YOLOv10's class names, Windows paths) are translated by name, without touching ``sys.modules``.
Not covered (refused, load them with ``--trust-checkpoint`` if you trust them): TorchScript
archives, checkpoints whose models need third-party packages (YOLO-World/YOLOE text encoders,
classification checkpoints that pickle torchvision transforms), sparse and nested tensors,
QAT (``modelopt``) checkpoints, models keeping a ``functools.partial`` (torchvision's ViT),
objects that pickle protocols 0/1 write through ``copyreg._reconstructor``.
"""

from __future__ import annotations

import _compat_pickle
import collections
import dataclasses
import enum
import importlib
import inspect
import os
import pickle
import struct
import sys
import threading
import types
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.errors import EdgepruneError, UnsafeCheckpointError

TRUST_HINT = (
    "If you trust this file and where it came from, load it anyway with --trust-checkpoint "
    "(Python: trust_checkpoint=True)."
)


class _Refused(Exception):
    """Raised inside the unpickler; ``safe_torch_load`` turns it into ``UnsafeCheckpointError``."""

    def __init__(self, what: str, why: str):
        super().__init__(f"{what}: {why}")
        self.what = what
        self.why = why


# --- which modules may be imported at all ----------------------------------------------------

_IMPORTABLE_EXACT = frozenset(
    "builtins _codecs collections datetime pathlib types argparse torch torch._utils torch._tensor "
    "torch.storage torch.serialization numpy numpy.dtypes numpy.core.multiarray numpy._core.multiarray".split()
)
_IMPORTABLE_TREES = ("torch.nn", "torch.ao.nn", "ultralytics.nn", "ultralytics.utils", "ultralytics.models")
_IMPORTABLE_TREES += ("torchvision.models", "torchvision.ops", "edgeprune")
# Functions reached through the guarded getattr (e.g. ``Detect.forward``) must be defined here.
_CODE_TREES = ("torch.nn", "torch.ao.nn", "ultralytics", "torchvision", "edgeprune")


def _under(module: str, *trees: str) -> bool:
    return any(module == t or module.startswith(t + ".") for t in trees)


def _importable(module: str) -> bool:
    if "__main__" in module.split("."):
        return False
    return module in _IMPORTABLE_EXACT or _under(module, *_IMPORTABLE_TREES)


# --- old names ----------------------------------------------------------------------------------

_MODULE_RENAMES = {
    # Ultralytics < 8.0.44 lived under ultralytics.yolo
    "ultralytics.yolo.utils": "ultralytics.utils",
    "ultralytics.yolo.v8": "ultralytics.models.yolo",
    "ultralytics.yolo.data": "ultralytics.data",
    "pathlib._local": "pathlib",  # Python 3.13 pickles paths under pathlib._local
}
_NAME_RENAMES = {
    ("ultralytics.nn.modules.block", "Silence"): ("torch.nn.modules.linear", "Identity"),  # YOLOv9e
    ("ultralytics.nn.tasks", "YOLOv10DetectionModel"): ("ultralytics.nn.tasks", "DetectionModel"),
    ("ultralytics.utils.loss", "v10DetectLoss"): ("ultralytics.utils.loss", "E2EDetectLoss"),
}
if os.name == "nt":
    _NAME_RENAMES[("pathlib", "PosixPath")] = ("pathlib", "WindowsPath")
else:
    _NAME_RENAMES[("pathlib", "WindowsPath")] = ("pathlib", "PosixPath")


@lru_cache(maxsize=1)
def _numpy_core() -> str:
    """Where numpy's pickling helpers live: ``numpy._core`` from numpy 2, ``numpy.core`` before."""
    try:
        importlib.import_module("numpy._core.multiarray")
        return "numpy._core"
    except ImportError:  # numpy < 2
        return "numpy.core"


def _rename(module: str, name: str) -> tuple[str, str]:
    for old, new in _MODULE_RENAMES.items():
        if _under(module, old):
            module = new + module[len(old) :]
            break
    for old in ("numpy.core", "numpy._core"):  # files written under numpy 1 and 2 both load
        if _under(module, old):
            module = _numpy_core() + module[len(old) :]
            break
    return _NAME_RENAMES.get((module, name), (module, name))


# --- guarded replacements for the few functions a checkpoint legitimately calls ---------------


def _no_hooks(hooks: Any) -> None:
    if hooks:  # torch always writes an empty OrderedDict
        raise _Refused("tensor backward hooks", "a tensor in the file carries hooks (called later)")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    _no_hooks(backward_hooks)
    return torch._utils._rebuild_tensor_v2(
        storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata
    )


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
    _no_hooks(backward_hooks)
    return torch._utils._rebuild_tensor_v3(
        storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata
    )


def _rebuild_parameter(data, requires_grad, backward_hooks):
    _no_hooks(backward_hooks)
    return torch._utils._rebuild_parameter(data, requires_grad, backward_hooks)


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    _no_hooks(backward_hooks)
    _no_dunders(state, "parameter state")
    return torch._utils._rebuild_parameter_with_state(data, requires_grad, backward_hooks, state)


def _rebuild_qtensor(storage, storage_offset, size, stride, quantizer_params, requires_grad, backward_hooks):
    _no_hooks(backward_hooks)
    return torch._utils._rebuild_qtensor(
        storage, storage_offset, size, stride, quantizer_params, requires_grad, backward_hooks
    )


def _rebuild_from_type_v2(func, new_type, args, state):
    """Tensors with Python attributes: ``func`` must itself be an allowed rebuild function."""
    if not _is_callable_entry(func):
        raise _Refused(_name_of(func), "a tensor asks to be rebuilt by a function outside the allow-list")
    if not (isinstance(new_type, type) and issubclass(new_type, torch.Tensor)):
        raise _Refused(_name_of(new_type), "a tensor asks to become a type that is not a tensor")
    if new_type not in (torch.Tensor, nn.Parameter) and not _class_allowed(new_type):
        raise _Refused(_name_of(new_type), "a tensor subclass outside the allow-list")
    _no_dunders(state, "tensor state")
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode``: how protocol 2 stores ``bytes``. Only that use is accepted."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode", f"only latin1 text is accepted, got encoding {encoding!r}")
    return text.encode("latin1")


_FACTORIES = (None, list, dict, set, int, float, str, tuple)


def _defaultdict(default_factory=None, *args):
    import collections

    if default_factory not in _FACTORIES:
        raise _Refused(
            _name_of(default_factory), "a defaultdict whose factory is not a plain container or number"
        )
    return collections.defaultdict(default_factory, *args)


def _np_reconstruct(subtype, shape, dtype):
    import numpy as np

    if subtype is not np.ndarray:
        raise _Refused(_name_of(subtype), "numpy arrays may only be rebuilt as plain numpy.ndarray")
    core = importlib.import_module(_numpy_core() + ".multiarray")
    return core._reconstruct(subtype, shape, dtype)


def _guarded_getattr(obj: Any, name: Any, *default: Any) -> Any:
    """``getattr`` as pickles use it: ``Detect.forward``, ``module.forward_fuse``, enum members."""
    shown = f"getattr({_name_of(obj)}, {name!r})"
    if default or not isinstance(name, str) or not name or name.startswith("_"):
        raise _Refused(shown, "only public attributes of allowed classes may be looked up")
    if isinstance(obj, type):
        if not _class_allowed(obj):
            raise _Refused(shown, "lookup on a class outside the allow-list")
        if issubclass(obj, enum.Enum):
            member = obj.__members__.get(name)
            if member is None:
                raise _Refused(shown, "not a member of the enum")
            return member
        attr = inspect.getattr_static(obj, name, None)
        if isinstance(attr, types.FunctionType) and _under(attr.__module__ or "", *_CODE_TREES):
            return attr
        raise _Refused(shown, "only plain functions defined on allowed classes may be looked up")
    if isinstance(obj, nn.Module) and _class_allowed(type(obj)):
        attr = inspect.getattr_static(type(obj), name, None)
        if isinstance(attr, types.FunctionType) and _under(attr.__module__ or "", *_CODE_TREES):
            return types.MethodType(attr, obj)  # from the class: the instance's own dict is not consulted
        raise _Refused(shown, "only methods of allowed modules may be looked up")
    raise _Refused(shown, "lookup on an object that is not an allowed class or module")


# --- the explicit table: (module, name, replacement or None, callable by the pickle) ----------

_SAME = None
_SPECS: dict[str, list[tuple[str, str, Any, bool]]] = {
    "builtins": [
        ("builtins", n, _SAME, True)
        for n in "set frozenset slice complex bytearray bytes range int float bool str tuple list dict".split()
    ]
    + [
        ("builtins", "getattr", _guarded_getattr, True),
        ("builtins", "Ellipsis", _SAME, False),
        ("builtins", "NotImplemented", _SAME, False),
    ],
    "_codecs": [("_codecs", "encode", _latin1_encode, True)],
    "collections": [
        ("collections", "OrderedDict", _SAME, True),
        ("collections", "Counter", _SAME, True),
        ("collections", "deque", _SAME, True),
        ("collections", "defaultdict", _defaultdict, True),
    ],
    "datetime": [("datetime", n, _SAME, True) for n in ("date", "time", "datetime", "timedelta", "timezone")],
    "pathlib": [
        ("pathlib", n, _SAME, True)
        for n in ("PurePath", "PurePosixPath", "PureWindowsPath", "Path", "PosixPath", "WindowsPath")
    ],
    "types": [("types", "SimpleNamespace", _SAME, True)],
    "argparse": [("argparse", "Namespace", _SAME, True)],
    "torch": [
        ("torch", "Size", _SAME, True),
        ("torch", "device", _SAME, True),
        ("torch", "Tensor", _SAME, False),
        ("torch", "UntypedStorage", _SAME, False),
        ("torch.nn.parameter", "Parameter", _SAME, False),
        ("torch.serialization", "_get_layout", _SAME, True),
        ("torch._utils", "_rebuild_tensor", _SAME, True),
        ("torch._utils", "_rebuild_tensor_v2", _rebuild_tensor_v2, True),
        ("torch._utils", "_rebuild_tensor_v3", _rebuild_tensor_v3, True),
        ("torch._utils", "_rebuild_parameter", _rebuild_parameter, True),
        ("torch._utils", "_rebuild_parameter_with_state", _rebuild_parameter_with_state, True),
        ("torch._utils", "_rebuild_qtensor", _rebuild_qtensor, True),
        ("torch._utils", "_rebuild_meta_tensor_no_storage", _SAME, True),
        ("torch._utils", "_rebuild_device_tensor_from_numpy", _SAME, True),
        ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor", _SAME, True),
        ("torch._tensor", "_rebuild_from_type_v2", _rebuild_from_type_v2, True),
    ],
    "numpy": [
        ("numpy", "dtype", _SAME, True),
        ("numpy", "ndarray", _SAME, False),
        ("{core}.multiarray", "scalar", _SAME, True),
        ("{core}.multiarray", "_reconstruct", _np_reconstruct, True),
    ],
    "ultralytics": [("ultralytics.utils", "IterableSimpleNamespace", _SAME, True)],
    "torchvision": [("torchvision.ops.boxes", "box_iou", _SAME, False)],
}

_table: dict[int, tuple[Any, Any, bool]] = {}  # id(real object) -> (real object, replacement, callable)
_callables: dict[int, Any] = {}  # id(replacement) -> replacement, for the REDUCE check
_built: set[str] = set()
_lock = threading.Lock()


def _build_table() -> None:
    """Add the entries of every package already imported (an object can only come from those)."""
    pending = [root for root in _SPECS if root not in _built and root in sys.modules]
    if not pending:
        return
    with _lock:
        for root in pending:
            if root in _built:
                continue
            for module, name, replacement, callable_ in _SPECS[root]:
                try:
                    real = getattr(importlib.import_module(module.format(core=_numpy_core())), name)
                except (ImportError, AttributeError):
                    continue
                obj = real if replacement is _SAME else replacement
                _table[id(real)] = (real, obj, callable_)
                if callable_:
                    _callables[id(obj)] = obj
            _built.add(root)


def _explicit(obj: Any) -> tuple[Any, bool] | None:
    _build_table()
    hit = _table.get(id(obj))
    return (hit[1], hit[2]) if hit is not None and hit[0] is obj else None


def _is_callable_entry(obj: Any) -> bool:
    _build_table()
    return _callables.get(id(obj)) is obj


# --- classes ---------------------------------------------------------------------------------


# Ultralytics modules that load files, download or wrap other runtimes: never part of a checkpoint.
_ULTRALYTICS_DENIED = ("ultralytics.nn.autobackend", "ultralytics.nn.backends", "ultralytics.nn.text_model")


def _ultralytics_denied(cls: type) -> bool:
    if _under(cls.__module__, *_ULTRALYTICS_DENIED):
        return True
    engine = sys.modules.get("ultralytics.engine.model")  # YOLO, RTDETR...: train, export, download
    return engine is not None and issubclass(cls, engine.Model)


def _class_allowed(cls: type) -> bool:
    """May the pickle create instances of ``cls`` (empty, then filled with attributes)?"""
    if not isinstance(cls, type):
        return False
    module = getattr(cls, "__module__", None) or ""
    is_module = issubclass(cls, nn.Module)
    if _under(module, "torch"):
        return is_module and _under(module, "torch.nn", "torch.ao.nn")
    if _under(module, "ultralytics"):
        if is_module:
            allowed = _under(module, "ultralytics.nn", "ultralytics.utils", "ultralytics.models")
            return allowed and not _ultralytics_denied(cls)
        return _under(
            module, "ultralytics.utils.loss", "ultralytics.utils.tal", "ultralytics.models.utils.loss"
        )
    if _under(module, "torchvision"):
        # plain helpers: box coders, and the FPN level mapper MultiScaleRoIAlign keeps after a forward
        return (is_module and _under(module, "torchvision.models", "torchvision.ops")) or (
            module in ("torchvision.models.detection._utils", "torchvision.ops.poolers")
        )
    if _under(module, "edgeprune"):
        return is_module or dataclasses.is_dataclass(cls) or issubclass(cls, enum.Enum)
    if _under(module, "numpy"):
        import numpy as np

        return issubclass(cls, (np.generic, np.dtype))
    return False


def _value_allowed(obj: Any) -> bool:
    return isinstance(obj, (torch.dtype, torch.layout, torch.memory_format, torch.qscheme))


def _name_of(obj: Any) -> str:
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
        return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', obj.__name__)}"
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    return f"<{type(obj).__module__}.{type(obj).__qualname__} object>"


def _kind(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return "a module"
    if isinstance(obj, type):
        return "a class outside the allow-list (only model layers and plain data types are)"
    if callable(obj):
        return "a function outside the allow-list; unpickling it could run it"
    return "an object outside the allow-list"


def _resolve(module: str, name: str) -> Any:
    shown = f"{module}.{name}"
    module, name = _rename(module, name)
    if not _importable(module):
        raise _Refused(shown, "its module is not on the allow-list; unpickling it could run code")
    head, *rest = name.split(".")  # protocol 4 writes qualified names, e.g. Detect.forward
    try:
        owner = importlib.import_module(module)
    except ImportError as e:
        raise _Refused(shown, f"module {module} cannot be imported here ({e})") from None
    if head.startswith("__") or not hasattr(owner, head):
        raise _Refused(shown, f"{module} has no public attribute {head!r}")
    obj = getattr(owner, head)
    explicit = _explicit(obj)
    if explicit is not None:
        obj = explicit[0]
    elif not (_class_allowed(obj) or _value_allowed(obj)):
        raise _Refused(shown, _kind(obj))
    for part in rest:
        obj = _guarded_getattr(obj, part)
    return obj


def _no_dunders(state: Any, what: str) -> None:
    """Refuse state that would set ``__setstate__``, ``__class__``, ``__reduce_ex__``... on an object."""
    parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
    for part in parts:
        if isinstance(part, dict):
            for key in part:
                if isinstance(key, str) and key.startswith("__") and key.endswith("__"):
                    raise _Refused(f"{what} {key!r}", "state may not set special attributes")


_INERT = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


# --- the unpickler --------------------------------------------------------------------------------


def _check_size(func: Any, args: tuple) -> None:
    """Memory bombs through allowed constructors: ``bytearray(2**40)``, ``list(range(10**12))``. A
    pickler passes them their contents, never a count; a range or an int asking for more is refused."""
    for arg in args:
        if isinstance(arg, range) or (func in (bytes, bytearray) and isinstance(arg, int)):
            raise _Refused(
                f"{_name_of(func)}({arg!r})",
                "a constructor call that would allocate more than a checkpoint holds",
            )


class RestrictedUnpickler(pickle._Unpickler):
    """A pure-Python unpickler that names only allow-listed objects and calls only data constructors."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._types: set[int] = set()

    def find_class(self, module: str, name: str) -> Any:
        sys.audit("pickle.find_class", module, name)
        if self.proto < 3 and self.fix_imports:  # protocol 2 writes Python 2 names (__builtin__.set)
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        obj = _resolve(module, name)
        if isinstance(obj, type):
            self._types.add(id(obj))
        return obj

    # -- opcodes that call something ---------------------------------------------------------
    def _check_call(self, func: Any, args: tuple) -> None:
        if _is_callable_entry(func):
            return
        if isinstance(func, type) and issubclass(func, enum.Enum) and _class_allowed(func) and len(args) == 1:
            return  # Enum(value) looks a member up (Python < 3.12 pickles enums this way)
        if isinstance(func, type) and id(func) in self._types:
            raise _Refused(
                _name_of(func),
                "the file asks to call this class (its constructor would run with the file's arguments)",
            )
        raise _Refused(_name_of(func), "the file asks to call something that is not a data constructor")

    def _check_new(self, cls: Any) -> None:
        if not (isinstance(cls, type) and id(cls) in self._types):
            raise _Refused(_name_of(cls), "the file asks to create an object of a type it did not name")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        self._check_call(func, args)
        _check_size(func, args)
        self.stack[-1] = func(*args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self._check_new(cls)
        self.append(cls.__new__(cls, *args))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self._check_new(cls)
        self.append(cls.__new__(cls, *args, **kwargs))

    def _instantiate(self, klass: Any, args: list) -> None:  # INST and OBJ (protocols 0 and 1)
        if args or not isinstance(klass, type) or hasattr(klass, "__getinitargs__"):
            self._check_call(klass, tuple(args))
            self.append(klass(*args))
        else:
            self._check_new(klass)
            self.append(klass.__new__(klass))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, _INERT):
            raise _Refused(_name_of(inst), "the file asks to change a class, function or module")
        _no_dunders(state, f"state of {_name_of(type(inst))}")
        setstate = getattr(type(inst), "__setstate__", None)  # the type's, never the instance's own
        if setstate is not None:
            setstate(inst, state)
            return
        slotstate = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slotstate = state
        if state:
            inst.__dict__.update(state)
        if slotstate:
            for k, v in slotstate.items():
                setattr(inst, k, v)

    def _container(self, kind: type | tuple[type, ...]) -> Any:
        target = self.stack[-1]
        if not isinstance(target, kind) or isinstance(target, _INERT):
            raise _Refused(_name_of(type(target)), f"the file asks to add items to a {type(target).__name__}")
        return target

    def load_append(self) -> None:
        value = self.stack.pop()
        target = self._container(list)
        list.append(target, value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        target = self._container(list)
        list.extend(target, items)

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self._container(set)
        set.update(target, items)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._container(dict)[key] = value  # a pickler sets items on dicts only

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._container(dict)
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def load_bytearray8(self) -> None:
        """Python's own unpickler allocates the declared size first: a 5 kB file declaring 5.8 GB
        took 6 GB (found by benchmarks/fuzz.py). Here only what the file holds is read."""
        (n,) = struct.unpack("<Q", self.read(8))
        data = self.read(n)
        if len(data) != n:
            raise pickle.UnpicklingError(f"BYTEARRAY8 declares {n} bytes but the pickle holds {len(data)}")
        self.append(bytearray(data))

    def get_extension(self, code: int) -> None:
        raise _Refused(f"extension code {code}", "copyreg extension codes are not accepted")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.ADDITEMS[0]] = load_additems
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


# What ``torch.load(pickle_module=...)`` needs: ``Unpickler``, ``load`` and a ``__name__``.
restricted_pickle = types.ModuleType("edgeprune.models.safe_load.restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.load = _restricted_load


# --- after loading ------------------------------------------------------------------------------


def _check_module(m: nn.Module) -> None:
    owner = _name_of(type(m))
    for key, value in vars(m).items():
        if key.endswith(("_hooks", "_hooks_with_kwargs")) and value:
            raise _Refused(f"{owner}.{key}", "a module in the file carries hooks (called later)")
        if isinstance(value, type) and not (issubclass(value, nn.Module) and _class_allowed(value)):
            # layer types are fine (torchvision's ResNet keeps its norm_layer); other classes are not
            raise _Refused(f"{owner}.{key} = {_name_of(value)}", "a module in the file stores a class")
        if (
            callable(value)
            and not isinstance(value, nn.Module)
            and callable(inspect.getattr_static(type(m), key, None))
        ):
            own_forward = (  # m.forward = m.forward_fuse, as Ultralytics' fuse() leaves it
                key == "forward"
                and isinstance(value, types.MethodType)
                and value.__self__ is m
                and value.__func__.__name__.startswith("forward")
            )
            if not own_forward:
                raise _Refused(f"{owner}.{key}", "an attribute in the file replaces a method of the module")
    for group, kind in (("_modules", nn.Module), ("_parameters", torch.Tensor), ("_buffers", torch.Tensor)):
        for key, value in (vars(m).get(group) or {}).items():
            if value is not None and not isinstance(value, kind):
                raise _Refused(f"{owner}.{group}[{key!r}]", f"holds a {type(value).__name__}")


_MAX_DEPTH = (
    100  # containers within containers; YOLO checkpoints nest about 30 deep, deepcopy overflows near 250
)


def _check_loaded(obj: Any) -> None:
    """Walk the loaded objects; every ``nn.Module`` passes ``_check_module``."""
    seen: set[int] = set()
    todo = [(obj, 0)]
    while todo:
        x, depth = todo.pop()
        if id(x) in seen or isinstance(x, (torch.Tensor, str, bytes, int, float, bool, type(None))):
            continue
        if depth > _MAX_DEPTH:
            raise _Refused(
                f"{type(x).__name__} nested {_MAX_DEPTH} levels deep",
                "deeper than any model; copying or printing it would exhaust the stack",
            )
        seen.add(id(x))
        if isinstance(x, dict):
            todo.extend((v, depth + 1) for item in x.items() for v in item)
        elif isinstance(x, (list, tuple, set, frozenset, collections.deque)):
            todo.extend((v, depth + 1) for v in x)
        elif isinstance(x, slice):
            todo.extend((v, depth + 1) for v in (x.start, x.stop, x.step))
        else:
            if isinstance(x, nn.Module):
                _check_module(x)
            state = getattr(x, "__dict__", None)
            if isinstance(state, dict):
                todo.extend((v, depth + 1) for v in state.values())


# --- public API -----------------------------------------------------------------------------------


# What Python's zipfile raises on a damaged archive (torch then reports the file as unreadable)
ZIP_ERRORS = (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError, struct.error)


def _is_torchscript(path: Path) -> bool:
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            return any(n.split("/", 1)[-1] == "constants.pkl" for n in z.namelist())
    except ZIP_ERRORS:
        return False


_MAX_INFLATION = (
    100  # torch.save stores records uncompressed: a record inflating far beyond its size is a bomb
)


def _check_archive(path: Path) -> None:
    """Zip tricks, refused before torch reads the archive: a name twice (torch reads the first copy,
    a scanner with Python's zipfile the last), names that leave the archive's folder, records that
    declare far more bytes than the file holds."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except ZIP_ERRORS:
        return  # torch reports it as unreadable
    names = [i.filename for i in infos]
    twice = sorted(n for n, k in collections.Counter(names).items() if k > 1)
    if twice:
        raise _Refused(
            f"zip entry {twice[0]!r}",
            "the archive holds this name twice (a scanner and torch would read different copies)",
        )
    roots = {n.split("/", 1)[0] for n in names}
    for n in names:
        if n.startswith("/") or "\\" in n or ".." in n.split("/") or len(roots) > 1:
            raise _Refused(f"zip entry {n!r}", "a name outside the archive's one folder")
    size = path.stat().st_size
    declared = sum(i.file_size for i in infos)
    if declared > _MAX_INFLATION * size + 2**20:
        raise _Refused(
            f"zip records of {declared} bytes",
            f"the archive is {size} bytes; its records inflate over {_MAX_INFLATION}x (a zip bomb)",
        )


def safe_torch_load(path: str | Path, *, trust: bool = False, map_location: Any = "cpu") -> Any:
    """``torch.load`` that refuses, before running anything, a file needing more than model data.

    Raises ``UnsafeCheckpointError`` (naming the file, the refused ``module.name`` and
    ``--trust-checkpoint``) or ``EdgepruneError`` for a missing or unreadable file. With
    ``trust=True`` the file is loaded with ``torch.load(weights_only=False)``: only for files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgepruneError(f"checkpoint not found: {path} (edgeprune never downloads weights)")
    if trust:
        return torch.load(path, map_location=map_location, weights_only=False)
    if _is_torchscript(path):
        raise UnsafeCheckpointError(
            f"{path} is a TorchScript archive, not a checkpoint of Python objects; edgeprune loads "
            f"TorchScript only from trusted files. {TRUST_HINT}"
        )
    try:
        _check_archive(path)
        obj = torch.load(path, map_location=map_location, pickle_module=restricted_pickle, weights_only=False)
        _check_loaded(obj)
        return obj
    except _Refused as e:
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it references `{e.what}`, {e.why}. Nothing from the file was run. "
            f"{TRUST_HINT}"
        ) from None
    except RuntimeError as e:
        if "pickle_module" in str(e) and os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD"):
            raise EdgepruneError(
                f"cannot load {path}: TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, which rules out edgeprune's "
                f"restricted loader; unset it (loading stays restricted)"
            ) from e
        # torch's own checks of the archive and its records (sizes, strides, missing records)
        detail = " ".join(str(e).split())[:300]
        raise EdgepruneError(f"{path} is not a readable PyTorch checkpoint ({detail})") from None
    except (
        EOFError,
        pickle.UnpicklingError,
        TypeError,
        ValueError,
        AttributeError,
        KeyError,
        IndexError,
        MemoryError,
        RecursionError,
        OverflowError,
        UnicodeDecodeError,
        AssertionError,  # torch's own checks of a storage's persistent id
        *ZIP_ERRORS,
    ) as e:
        raise EdgepruneError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e


def load_ultralytics_checkpoint(path: str | Path, *, trust: bool = False) -> nn.Module:
    """The model of an Ultralytics checkpoint, loaded through ``safe_torch_load``.

    Prepared the way Ultralytics' ``load_checkpoint`` does: the EMA weights if present, else the
    model, in FP32 and eval mode, ``args`` = Ultralytics' defaults updated with the checkpoint's
    ``train_args``, ``pt_path``, ``task`` and (if missing) ``stride`` set, ``inplace`` on.
    """
    return load_ultralytics_checkpoint_with_metadata(path, trust=trust)[0]


def load_ultralytics_checkpoint_with_metadata(
    path: str | Path, *, trust: bool = False
) -> tuple[nn.Module, dict]:
    """``load_ultralytics_checkpoint``'s model and what edgeprune recorded in the checkpoint (its
    ``edgeprune`` entry; {} if none)."""
    from edgeprune import _optional

    _optional.ultralytics()
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.tasks import guess_model_task

    ckpt = safe_torch_load(path, trust=trust)
    if isinstance(ckpt, nn.Module):
        ckpt = {"model": ckpt}
    if not isinstance(ckpt, dict):
        raise EdgepruneError(f"{path} holds a {type(ckpt).__name__}, not an Ultralytics checkpoint")
    if ckpt.get("modelopt") and not trust:
        raise UnsafeCheckpointError(
            f"{path} is a quantization-aware (modelopt) checkpoint, whose restore step edgeprune "
            f"does not run on untrusted files. {TRUST_HINT}"
        )
    model = ckpt.get("ema") if isinstance(ckpt.get("ema"), nn.Module) else ckpt.get("model")
    if not isinstance(model, nn.Module):
        raise EdgepruneError(f"{path} does not hold a model: its 'model' entry is a {type(model).__name__}")
    model = model.float()
    if ckpt.get("modelopt"):
        from ultralytics.nn.tasks import restore_qat

        restore_qat(model, ckpt["modelopt"])
    train_args = ckpt.get("train_args") or {}
    if not isinstance(train_args, dict):
        train_args = dict(vars(train_args))
    model.args = {**DEFAULT_CFG_DICT, **train_args}
    model.pt_path = str(path)
    model.task = getattr(model, "task", None) or guess_model_task(model)
    if not hasattr(model, "stride"):
        model.stride = torch.tensor([32.0])
    model.eval()
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = True
        elif isinstance(m, nn.Upsample) and not hasattr(m, "recompute_scale_factor"):
            m.recompute_scale_factor = None  # modules pickled by torch < 1.11
    meta = ckpt.get("edgeprune")
    return model, dict(meta) if isinstance(meta, dict) else {}


__all__: list[str] = [
    "RestrictedUnpickler",
    "TRUST_HINT",
    "ZIP_ERRORS",
    "load_ultralytics_checkpoint",
    "load_ultralytics_checkpoint_with_metadata",
    "restricted_pickle",
    "safe_torch_load",
]
