"""Whole repeats of Ultralytics blocks, and how to remove one.

A *repeat* is one element of a block's chain of identical units: a Bottleneck of C2f/C3k2, a
C3k or Bottleneck of C3k/C3/RepCSP, a PSABlock of C2PSA, an ABlock pair of A2C2f, a LightConv of
HGBlock, a Conv of a layer Ultralytics built as ``nn.Sequential`` (``n > 1`` in the YAML, e.g.
YOLOv6). Two kinds of chain exist:

* **sequential** (``nn.Sequential``: C3, C3k, RepCSP, RepC3, C2PSA, a repeated layer): the next
  unit reads what the removed one read. Nothing else changes.
* **concatenated** (``ModuleList`` in C2f and its subclasses, A2C2f, HGBlock): every unit's output
  is also concatenated, in order, into the block's last conv (``cv2``; HGBlock's ``sc``).
  Removing a unit also removes its slice of that conv's input channels.

A unit is removable only when its output has its input's shape (checked on a traced input), so
the next unit and the concatenation still fit. Blocks come back as the stock classes with fewer
units, so a depth-pruned checkpoint loads, predicts, validates and exports with plain
Ultralytics. (Its ``model.yaml`` still says the old ``n``: retraining from the YAML is the native
mode's job.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from edgeprune.errors import EdgepruneError


@dataclass(frozen=True)
class Repeat:
    """One removable unit: ``index`` in the chain at ``chain`` (a module path in the model)."""

    chain: str
    index: int
    kind: str  # "sequential" or "concatenated"
    block: str  # the block's class name, for reports

    @property
    def name(self) -> str:
        return f"{self.chain}.{self.index}"


def _concat_consumers() -> dict[object, str]:
    """The stock ``forward`` of each concatenated-chain block -> the conv that reads the concatenation."""
    from ultralytics.nn.modules import block as B

    return {B.C2f.forward: "cv2", B.A2C2f.forward: "cv2", B.HGBlock.forward: "sc"}


def _sequential_blocks() -> tuple[type, ...]:
    from ultralytics.nn.modules import block as B

    return (B.C3, B.RepC3, B.C2PSA)  # C3k, RepCSP, C3x, C3Ghost, C3TR subclass C3


def _chains(model: nn.Module) -> Iterable[tuple[str, nn.Module, str]]:
    """(path, container, kind) of every chain of units in an Ultralytics model."""
    consumers, sequential = _concat_consumers(), _sequential_blocks()
    for name, module in model.named_modules():
        m = getattr(module, "m", None)
        if isinstance(m, nn.ModuleList) and getattr(type(module), "forward", None) in consumers:
            yield f"{name}.m" if name else "m", m, "concatenated"
        elif isinstance(m, nn.Sequential) and isinstance(module, sequential):
            yield f"{name}.m" if name else "m", m, "sequential"
    layers = getattr(model, "model", None)
    if isinstance(layers, nn.Sequential):
        for i, layer in enumerate(layers):
            if type(layer) is nn.Sequential and len(layer) > 1:  # a layer repeated n times by parse_model
                yield f"model.{i}", layer, "sequential"


def _owner(model: nn.Module, chain: str) -> nn.Module:
    """The block holding ``chain`` (for a repeated layer: the layer itself)."""
    parent = chain.rsplit(".", 1)[0] if chain.endswith(".m") else chain
    return model.get_submodule(parent) if parent not in ("", "m") else model


def traced_io(model: nn.Module, units: Iterable[nn.Module], example: torch.Tensor) -> dict[nn.Module, tuple]:
    """(first input, output) of each of ``units`` at its first call in one eval-mode pass of
    ``example``, without gradients; the model's mode is restored."""
    seen: dict[nn.Module, tuple] = {}

    def hook(module: nn.Module, args: tuple, output: object) -> None:
        seen.setdefault(module, (args[0] if args else None, output))

    handles = [unit.register_forward_hook(hook) for unit in units]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return seen


def _traced_shapes(
    model: nn.Module, units: Iterable[nn.Module], example: torch.Tensor
) -> dict[nn.Module, tuple[torch.Size, torch.Size]]:
    """(input shape, output shape) of each of ``units`` that reads and returns one tensor."""
    return {
        unit: (x.shape, y.shape)
        for unit, (x, y) in traced_io(model, units, example).items()
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
    }


def repeats(model: nn.Module, example: torch.Tensor) -> list[Repeat]:
    """Every removable unit of ``model``: units whose output has their input's shape on ``example``."""
    found = [
        (chain, kind, i, unit)
        for chain, container, kind in _chains(model)
        for i, unit in enumerate(container)
    ]
    shapes = _traced_shapes(model, [unit for *_, unit in found], example)
    out = []
    for chain, kind, i, unit in found:
        seen = shapes.get(unit)
        if seen is not None and seen[0] == seen[1]:
            out.append(Repeat(chain, i, kind, type(_owner(model, chain)).__name__))
    return out


def remove_repeats(model: nn.Module, units: Iterable[Repeat], example: torch.Tensor) -> None:
    """Remove ``units`` from ``model`` in place (a unit inside a removed one goes with it).

    ``example`` is traced to read each unit's output width (the slice of a concatenated chain's
    consumer to drop)."""
    units = list(units)
    chosen = {u.name for u in units}
    # a unit nested in another chosen unit leaves with it
    units = [u for u in units if not any(u.chain.startswith(f"{c}.") for c in chosen)]
    widths = _output_widths(model, units, example)
    by_chain: dict[str, list[Repeat]] = {}
    for u in units:
        by_chain.setdefault(u.chain, []).append(u)
    for chain, group in by_chain.items():
        container = model.get_submodule(chain)
        kind = group[0].kind
        if kind == "concatenated":
            block = _owner(model, chain)
            consumer = getattr(block, _concat_consumers()[type(block).forward])
            _drop_inputs(consumer, _concat_slices(consumer, container, widths, chain, group))
        for u in sorted(group, key=lambda u: -u.index):  # from the end: indices stay valid
            if u.index >= len(container):
                raise EdgepruneError(f"{u.name}: no such unit ({len(container)} in the chain)")
            del container[u.index]


def _output_widths(model: nn.Module, units: list[Repeat], example: torch.Tensor) -> dict[str, list[int]]:
    """Output channels of every unit of each concatenated chain among ``units``."""
    chains = {u.chain: list(model.get_submodule(u.chain)) for u in units if u.kind == "concatenated"}
    if not chains:
        return {}
    shapes = _traced_shapes(model, [unit for members in chains.values() for unit in members], example)
    return {
        chain: [int(shapes[unit][1][1]) if unit in shapes else 0 for unit in members]
        for chain, members in chains.items()
    }


def _concat_slices(
    consumer: nn.Module, container: nn.Module, widths: dict[str, list[int]], chain: str, group: list[Repeat]
) -> list[int]:
    """The consumer's input channels that the removed units' outputs fill: the concatenation is
    [what comes before the chain, unit 0, unit 1, ...]."""
    conv = consumer.conv
    outs = widths[chain]
    prefix = conv.in_channels - sum(outs)
    if prefix < 0 or len(outs) != len(container):
        raise EdgepruneError(f"{chain}: its units do not add up to the input of the block's last conv")
    drop: list[int] = []
    for u in group:
        start = prefix + sum(outs[: u.index])
        drop += range(start, start + outs[u.index])
    return drop


def _drop_inputs(consumer: nn.Module, drop: list[int]) -> None:
    """Remove input channels ``drop`` from ``consumer`` (an Ultralytics ``Conv``)."""
    conv = consumer.conv
    if conv.groups != 1:
        raise EdgepruneError(f"cannot cut the inputs of a grouped conv ({conv})")
    keep = [i for i in range(conv.in_channels) if i not in set(drop)]
    new = nn.Conv2d(
        len(keep), conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        bias=conv.bias is not None,
    )  # fmt: skip
    with torch.no_grad():
        new.weight.copy_(conv.weight[:, keep])
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    new.to(conv.weight.device, conv.weight.dtype)
    new.weight.requires_grad_(conv.weight.requires_grad)
    new.train(conv.training)
    consumer.conv = new
