"""Native pruning: widths and repeats that Ultralytics' own YAML can rebuild, and that YAML.

``YOLO("pruned.pt").train()`` rebuilds the network from the checkpoint's ``model.yaml`` and keeps
only the weights whose shapes fit. A freely pruned model does not fit (a Bottleneck's hidden
width inside C2f is tied to the block's in Ultralytics' constructors, every head branch to the
head's input, ...). A *native* model does: each layer's widths are what Ultralytics' constructor
makes from a few numbers the YAML can say, and the YAML says them:

* a layer's output channels (``args[0]``, a multiple of 8: ``make_divisible``), written with
  ``width_multiple`` and ``depth_multiple`` 1.0 and no ``scales``, so nothing is scaled again;
* a block's hidden width, through its expansion ``e`` (``hidden = int(c2 * e)``, or ``c1`` for
  PSA/C2PSA) or its explicit hidden arguments (``c3``/``c4`` of RepNCSPELAN4/ELAN1, ``cm`` of
  HGStem/HGBlock, ``npr`` of a Segment head): ``HIDDEN`` lists them; a hidden width an attention
  runs on stays a whole number of its heads (Ultralytics derives the head count from it);
* repeats through ``n``.

Everything else (a Bottleneck's width inside C3k2, SPPF's hidden width, every head branch) is
derived by Ultralytics' constructor from those numbers. ``native_yaml`` reads the numbers off a
live model (rounded, when planning) and writes the YAML; ``rebuild`` builds it with Ultralytics;
its layers' widths are what native pruning prunes to, and after pruning the rebuilt model must
have every tensor shape of the pruned one (``mismatches``).

Layer arguments are read from a recording of the calls Ultralytics' ``parse_model`` makes while
it builds the model's current YAML (``layer_calls``): the YAML written back passes the same
values explicitly (scale-dependent ones included, e.g. C3k2's ``c3k`` for m/l/x), so it is exact
whatever name the file gets.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgeprune.errors import EdgepruneError

# parse_model's layer kinds (Ultralytics 8.4): classes whose first YAML argument is the output
# width (the input width is inserted before it), and those of them that also get ``n`` inserted
_BASE = frozenset(
    "Classify Conv ConvTranspose GhostConv Bottleneck GhostBottleneck SPP SPPF C2fPSA C2PSA DWConv "
    "Focus BottleneckCSP C1 C2 C2f C3k2 RepNCSPELAN4 ELAN1 ADown AConv SPPELAN C2fAttn C3 C3TR C3Ghost "
    "ConvTranspose2d DWConvTranspose2d C3x RepC3 PSA SCDown C2fCIB A2C2f".split()
)
_REPEAT = frozenset(
    "BottleneckCSP C1 C2 C2f C3k2 C2fAttn C3 C3TR C3Ghost C3x RepC3 C2fPSA C2fCIB C2PSA A2C2f".split()
)
_HG = frozenset({"HGStem", "HGBlock"})  # args [cm, c2, ...]; HGBlock gets n inserted after k
_SAME_WIDTH = frozenset({"C2PSA", "PSA"})  # their constructors assert c1 == c2


def _conv_out(module: nn.Module) -> int:
    """The output channels of a layer: its last convolution's (a Conv's, a LightConv's DWConv)."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return int(convs[-1].out_channels)


@dataclass(frozen=True)
class Hidden:
    """One hidden width a YAML can set for a block class.

    ``param``: the constructor argument that sets it; ``read``: the width in a live block;
    ``to_arg``: the argument's value for a width (given the block's c1 and c2); ``halves``: the
    width is cut in two equal halves (each half a multiple of the alignment); ``multiple``: the
    width must be a multiple of this whatever the alignment (parse_model rounds it so, or the
    constructor asserts it). A block with attention on this width also keeps it a whole number of
    heads (Ultralytics derives the head count from it).
    """

    param: str
    read: Callable[[nn.Module], int]
    to_arg: Callable[[int, int, int], Any]
    halves: bool = False
    multiple: int = 1

    def step(self, align: int, block: nn.Module) -> int:
        return math.lcm(align * (2 if self.halves else 1), self.multiple, _head_dim(block))


def _of_c2(hidden: int, c1: int, c2: int) -> float:
    return (hidden + 0.5) / c2  # int(c2 * e) == hidden, whatever the float rounding


def _of_c1(hidden: int, c1: int, c2: int) -> float:
    return (hidden + 0.5) / c1


def _exact(hidden: int, c1: int, c2: int) -> int:
    return hidden


def _head_dim(block: nn.Module) -> int:
    """The head width of the attention inside ``block`` (1 if none)."""
    from ultralytics.nn.modules.block import AAttn, Attention

    dims = [int(m.head_dim) for m in block.modules() if isinstance(m, (Attention, AAttn))]
    return math.lcm(1, *dims)


_HALVES = Hidden("e", lambda b: int(b.c), _of_c2)  # C2f.c: each half of cv1
_CV1 = Hidden("e", lambda b: _conv_out(b.cv1), _of_c2)
HIDDEN: dict[str, list[Hidden]] = {
    "C2f": [_HALVES],
    "C3k2": [_HALVES],  # attn=True (YOLO26): PSABlocks on the hidden width
    "C2fCIB": [_HALVES],
    "C2fPSA": [_HALVES],
    "C3": [_CV1],
    "C3x": [_CV1],
    "A2C2f": [Hidden("e", lambda b: _conv_out(b.cv1), _of_c2, multiple=32)],  # asserted by A2C2f
    "C2PSA": [Hidden("e", lambda b: int(b.c), _of_c1)],
    "PSA": [Hidden("e", lambda b: int(b.c), _of_c1)],
    "RepNCSPELAN4": [
        Hidden("c3", lambda b: _conv_out(b.cv1), _exact, halves=True),
        Hidden("c4", lambda b: _conv_out(b.cv2[-1]), _exact),
    ],
    "ELAN1": [
        Hidden("c3", lambda b: _conv_out(b.cv1), _exact, halves=True),
        Hidden("c4", lambda b: _conv_out(b.cv2), _exact),
    ],
    "SPPELAN": [Hidden("c3", lambda b: _conv_out(b.cv1), _exact)],
    "HGStem": [Hidden("cm", lambda b: _conv_out(b.stem1), _exact, multiple=2)],
    "HGBlock": [Hidden("cm", lambda b: _conv_out(b.m[0]), _exact)],
    # heads: parse_model passes their YAML arguments as they are, after make_divisible(npr, 8)
    "Segment": [Hidden("npr", lambda h: _conv_out(h.proto.cv1), _exact, multiple=8)],
    "Segment26": [Hidden("npr", lambda h: _conv_out(h.proto.cv1), _exact, multiple=8)],
}


# --- what parse_model passed to each layer ------------------------------------------------------
def _layer_class(name: str) -> type | None:
    from ultralytics.nn import tasks

    if name.startswith("nn."):
        return getattr(nn, name[3:], None)
    cls = getattr(tasks, name, None)
    return cls if isinstance(cls, type) else None


@contextmanager
def _recorded(classes: set[type]) -> Iterator[dict[int, tuple]]:
    """While active, the positional arguments of every outermost construction of ``classes``
    (a block's own sub-blocks are not recorded), by ``id`` of the object built."""
    calls: dict[int, tuple] = {}
    depth = [0]
    saved: list[tuple[type, Any]] = []
    for cls in classes:
        original = cls.__init__

        def init(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> None:
            depth[0] += 1
            try:
                _original(self, *args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                calls[id(self)] = args

        saved.append((cls, cls.__dict__.get("__init__")))
        cls.__init__ = init
    try:
        yield calls
    finally:
        for cls, own in reversed(saved):
            if own is None:
                del cls.__init__
            else:
                cls.__init__ = own


def _rows(cfg: dict) -> list[list[Any]]:
    return [list(row) for row in cfg["backbone"] + cfg["head"]]


def _build(model: nn.Module, cfg: dict) -> nn.Module:
    """``cfg`` built by Ultralytics as a model of ``model``'s class (in eval mode, on the CPU)."""
    kwargs: dict[str, Any] = {"nc": cfg.get("nc"), "verbose": False}
    try:
        built = type(model)(copy.deepcopy(cfg), ch=int(cfg.get("channels", 3)), **kwargs)
    except (AssertionError, ValueError, TypeError, RuntimeError, KeyError, IndexError) as e:
        raise EdgepruneError(
            f"Ultralytics cannot build the native model config: {type(e).__name__}: {e}"
        ) from e
    return built.eval()


def layer_calls(model: nn.Module) -> tuple[nn.Module, list[tuple[type, tuple] | None]]:
    """``model.yaml`` built again by Ultralytics, and per layer the class and positional
    arguments its constructor received (None for torch.nn layers)."""
    cfg = getattr(model, "yaml", None)
    if not isinstance(cfg, dict) or "backbone" not in cfg:
        raise EdgepruneError(
            "native pruning needs the model's config (model.yaml), which this model does not carry"
        )
    classes = {
        cls
        for row in _rows(cfg)
        if (cls := _layer_class(row[2])) is not None
        and (cls.__module__.startswith("ultralytics.") or cls.__name__ in _BASE)
    }
    with _recorded(classes) as calls:
        built = _build(model, cfg)
    out: list[tuple[type, tuple] | None] = []
    for layer in built.model:
        first = layer[0] if type(layer) is nn.Sequential and len(layer) else layer
        args = calls.get(id(first))
        out.append(None if args is None else (type(first), args))
    return built, out


# --- the YAML of a live model -------------------------------------------------------------------
def _layer_widths(model: nn.Module, example: torch.Tensor) -> list[Any]:
    """Each top-level layer's output channels on ``example`` (a list for CBLinear's parts; None
    for outputs that are not feature maps, e.g. a head's)."""
    from edgeprune.models.ultralytics_depth import traced_io

    outputs = {unit: y for unit, (_, y) in traced_io(model, model.model, example).items()}

    def width(y: Any) -> Any:
        if isinstance(y, torch.Tensor) and y.dim() == 4:
            return int(y.shape[1])
        if (
            isinstance(y, (tuple, list))
            and y
            and all(isinstance(o, torch.Tensor) and o.dim() == 4 for o in y)
        ):
            return [int(o.shape[1]) for o in y]
        return None

    return [width(outputs.get(layer)) for layer in model.model]


def _aligned(width: int, original: int, step: int) -> int:
    """``width`` to the nearest multiple of ``step``, at least ``step``, at most ``original``."""
    if width >= original or original <= step:
        return original
    return min(original, max(step, round(width / step) * step))


def _unit(layer: nn.Module) -> nn.Module:
    """A layer's block (the first unit of a layer parse_model built as ``nn.Sequential``)."""
    return layer[0] if type(layer) is nn.Sequential and len(layer) else layer


def _repeats(block: nn.Module) -> int | None:
    chain = getattr(block, "m", None)
    return len(chain) if isinstance(chain, (nn.ModuleList, nn.Sequential)) else None


def native_yaml(model: nn.Module, example: torch.Tensor, align: int | None = None) -> dict:
    """The config that builds ``model``'s widths and repeats with Ultralytics' constructors.

    Widths are read off ``model`` (its layer outputs on ``example``, its blocks' hidden widths).
    With ``align``, each is rounded to a multiple of it (layer outputs of ``lcm(8, align)``),
    never above what the current config builds: the config to prune *to*. Without, the config
    that rebuilds ``model`` as it is, if it is native (``mismatches`` checks it).
    """
    built, calls = layer_calls(model)
    ref = _layer_widths(built, example.detach().float().cpu())  # built on the CPU
    live = _layer_widths(model, example)
    cfg = copy.deepcopy({k: v for k, v in model.yaml.items() if k not in ("scales", "scale")})
    cfg["depth_multiple"], cfg["width_multiple"] = 1.0, 1.0
    channels, out_step = int(cfg.get("channels", 3)), math.lcm(8, align or 1)
    outs: list[Any] = []  # parse_model's bookkeeping: each layer's output width

    def width_in(f: Any) -> Any:
        return outs[f if isinstance(f, int) else f[0]] if outs else channels

    rows = []
    for i, (row, call) in enumerate(zip(_rows(model.yaml), calls, strict=True)):
        f, n, args = row[0], row[1], list(row[3])
        name = row[2].removeprefix("nn.")  # torch.nn.ConvTranspose2d is one of parse_model's base layers
        layer, block, ref_block = model.model[i], _unit(model.model[i]), _unit(built.model[i])
        if name not in _REPEAT and name != "HGBlock":  # parse_model repeats the layer n times
            n = len(layer) if type(layer) is nn.Sequential else 1
        width = live[i] if live[i] is not None else ref[i]
        if align is not None and isinstance(width, int) and isinstance(ref[i], int):
            width = _aligned(width, ref[i], out_step)
        elif align is not None and isinstance(width, list):
            width = [
                _aligned(w, r, out_step) for w, r in zip(width, ref[i], strict=True)
            ]  # summed with layers
        rules = HIDDEN.get(name, [])
        if call is not None and (name in _BASE or name in _HG or name == "CBLinear"):
            cls, ctor = call
            params = list(inspect.signature(cls.__init__).parameters)[1:]
            needed = [params.index(r.param) for r in rules] + [params.index("c2") if "c2" in params else 1]
            values = _filled(cls, ctor, max(needed) + 1)
            c1 = width_in(f)
            # C2PSA/PSA assert c1 == c2; a layer repeated as nn.Sequential feeds each unit the last
            c2 = c1 if name in _SAME_WIDTH or (type(layer) is nn.Sequential and len(layer) > 1) else width
            values[params.index("c2") if "c2" in params else 1] = c2
            for rule in rules:
                hidden = rule.read(block)
                if align is not None:
                    hidden = _aligned(hidden, rule.read(ref_block), rule.step(align, ref_block))
                values[params.index(rule.param)] = rule.to_arg(hidden, c1, c2)
            if name in _REPEAT or name == "HGBlock":  # parse_model inserts n: the YAML says it
                count = _repeats(block)
                n = count if count is not None else values[params.index("n")]
                del values[params.index("n")]
            args = values[1:]  # parse_model inserts c1
            outs.append(c2)
        else:
            for rule in rules:  # a head's hidden width (Segment's npr), a YAML argument as it is
                params = list(inspect.signature(type(block).__init__).parameters)[1:]
                hidden = rule.read(block)
                if align is not None:
                    hidden = _aligned(hidden, rule.read(ref_block), rule.step(align, ref_block))
                args[params.index(rule.param)] = hidden
            outs.append(_passed_width(name, f, outs, width, width_in))
        rows.append([f, n, row[2], args])
    nb = len(model.yaml["backbone"])
    cfg["backbone"], cfg["head"] = rows[:nb], rows[nb:]
    return cfg


def _filled(cls: type, ctor: tuple, length: int) -> list[Any]:
    """The recorded positional arguments, extended to ``length`` with the defaults."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    values = list(ctor)
    for p in params[len(values) : length]:
        values.append(p.default)
    return values


def _passed_width(name: str, f: Any, outs: list[Any], width: Any, width_in: Callable[[Any], Any]) -> Any:
    """A layer's output width as parse_model's bookkeeping has it, for layers that set none."""
    if name == "Concat":
        return sum(outs[j] for j in f)
    if name == "CBFuse":
        return outs[f[-1]]
    if isinstance(width, (int, list)):
        return width
    return width_in(f)


# --- checking -----------------------------------------------------------------------------------
def rebuild(model: nn.Module, cfg: dict) -> nn.Module:
    """``cfg`` built with Ultralytics as ``model``'s class."""
    return _build(model, cfg)


def mismatches(model: nn.Module, rebuilt: nn.Module) -> list[str]:
    """Tensors whose shape differs between ``model`` and ``rebuilt``, or that only one has
    (``"name: (shape) vs (shape)"``)."""
    a = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    return [
        f"{k}: {a.get(k, 'missing')} vs {b.get(k, 'missing')}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]


def module_width(module: nn.Module) -> int | None:
    """The output channels of a layer a pruning group cuts (conv, linear, norm), or None."""
    for attr in ("out_channels", "out_features", "num_features"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    return None


def yaml_repeats(model: nn.Module, found: list[Any]) -> list[Any]:
    """The repeats among ``found`` (``ultralytics_depth.Repeat``) a config can remove: units of a
    layer's own chain, whose length is the layer's ``n`` (not the fixed two C3k units inside a
    C3k2, nor RepNCSPELAN4's, whose two chains share one ``n``), and of a layer repeated as
    ``nn.Sequential`` all but the first (``n`` cannot say zero there)."""
    out = []
    for unit in found:
        head, _, tail = unit.chain.rpartition(".")
        if tail == "m" and head.startswith("model.") and head.count(".") == 1:
            name = type(_unit(model.get_submodule(head))).__name__
            if name in _REPEAT or name == "HGBlock":
                out.append(unit)
        elif unit.chain.startswith("model.") and unit.chain.count(".") == 1 and unit.index > 0:
            out.append(unit)
    return out


def unwrap_single_repeats(model: nn.Module) -> None:
    """A layer Ultralytics built as ``nn.Sequential`` (``n > 1``) left with one unit becomes that
    unit, as parse_model builds ``n == 1`` (so its weights keep their names)."""
    for i, layer in enumerate(model.model):
        if type(layer) is nn.Sequential and len(layer) == 1:
            unit = layer[0]
            for attr in ("f", "i", "type", "np"):
                if hasattr(layer, attr):
                    setattr(unit, attr, getattr(layer, attr))
            model.model[i] = unit
