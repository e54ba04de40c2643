"""Prunable equivalents of Ultralytics blocks, and the head's raw-map trace.

A dependency graph (torch-pruning) follows convolutions, concatenations and element-wise ops
well, but two patterns in Ultralytics blocks defeat it:

* **A conv output cut into halves** (``cv1(x).chunk(2, 1)`` in C2f/C3k2/C2fCIB/C2fPSA and
  RepNCSPELAN4/ELAN1, ``cv1(x).split((c, c), 1)`` in C2PSA/PSA). Pruning the conv and then
  cutting its output in two equal halves mixes channels of both halves. ``HalvesSplit`` runs the
  block with two convs, one per half, carrying the same weights (outputs are identical), so each
  half is its own pruning group; ``merge`` writes them back into the stock block afterwards
  (the stock block needs equal halves). ``PartsSplit`` does the same for CBLinear's
  ``conv(x).split(c2s)`` (YOLOv9 e), whose parts may differ. ADown's ``x.chunk(2, 1)`` of its
  *input* needs no rewrite: ``halved_inputs`` declares two channel groups so both halves of the
  producer shrink alike.
* **Attention** (``Attention`` in PSA/C2PSA/PSABlock, ``AAttn`` in A2C2f's ABlock) reshapes
  channels into heads and multiplies q, k and v; the graph search through these reshapes explodes
  (yolo11n did not finish in minutes). ``OpaqueAttention`` presents the attention module to the
  graph as one node (a custom autograd function), with a small pruner for what may change: the
  residual stream it reads and writes (input channels of ``qkv``, output channels of ``proj``),
  **in whole heads**. ``Attention`` needs its value width to equal its input width
  (``view(B, C, H, W)``), and Ultralytics builds both attentions with the stream width a whole
  number of heads (``num_heads = c // 64`` in PSA blocks, ``c // 32`` in ABlock), so a stream
  that loses ``k * head_dim`` channels also loses ``k`` heads: each with its query, key and value
  rows of ``qkv``, its value channels of the positional conv ``pe`` and its input columns of
  ``proj``. Which heads go is ranked by ``OpaqueAttention.head_scores``: first-order Taylor
  importance of each head's weights (``|w * dL/dw|`` summed over its ``qkv`` rows and ``proj``
  columns) when gradients are there, their L2 norm otherwise. The stream's alignment is the head
  width (``Detector.width_step``). RT-DETR's AIFI is kept whole.

Everything here works on live modules and restores stock Ultralytics classes, so a pruned
checkpoint loads with plain ``ultralytics.YOLO(path)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from edgeprune.errors import EdgepruneError

_ROUTING = ("f", "i", "type", "np")  # Ultralytics' per-layer routing attributes (from-layer, index, ...)


# --- conv halves ------------------------------------------------------------------------------
def _c2f_body(block: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    y = [a, b]
    y.extend(m(y[-1]) for m in block.m)
    return block.cv2(torch.cat(y, 1))


def _elan_body(block: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    y = [a, b]
    y.extend(m(y[-1]) for m in (block.cv2, block.cv3))
    return block.cv4(torch.cat(y, 1))


def _c2psa_body(block: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return block.cv2(torch.cat((a, block.m(b)), 1))


def _psa_body(block: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    b = b + block.attn(b)
    b = b + block.ffn(b)
    return block.cv2(torch.cat((a, b), 1))


def _split_bodies() -> dict[Callable, Callable]:
    """The stock ``forward`` of each halves block -> the same computation on two given halves."""
    from ultralytics.nn.modules import block as B

    return {
        B.C2f.forward: _c2f_body,  # C2f, C3k2, C2fCIB, C2fPSA (they inherit C2f.forward)
        B.RepNCSPELAN4.forward: _elan_body,  # RepNCSPELAN4, ELAN1
        B.C2PSA.forward: _c2psa_body,
        B.PSA.forward: _psa_body,
    }


class HalvesSplit(nn.Module):
    """A block whose first conv's output is cut in two, run with one conv per half.

    Holds the original block (its other layers are shared, not copied); ``cv1`` is replaced by
    ``cv_a`` and ``cv_b``. When the block carries a kept-whole attention, its second half is the
    attention's stream and cannot shrink, so the first half is kept too (``kept()``): the stock
    block needs equal halves.
    """

    def __init__(self, block: nn.Module, body: Callable):
        super().__init__()
        from ultralytics.nn.modules import Conv

        conv = block.cv1
        c = conv.conv.out_channels // 2
        self.cv_a = Conv(conv.conv.in_channels, c, 1, 1)
        self.cv_b = Conv(conv.conv.in_channels, c, 1, 1)
        _copy_conv(conv, self.cv_a, slice(0, c))
        _copy_conv(conv, self.cv_b, slice(c, 2 * c))
        block.cv1 = nn.Identity()  # a placeholder keeps the slot, so module order survives the merge
        self.block, self._body = block, body
        for attr in _ROUTING:
            if hasattr(block, attr):
                setattr(self, attr, getattr(block, attr))
        self.train(block.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._body(self.block, self.cv_a(x), self.cv_b(x))

    def kept(self) -> list[nn.Module]:
        """Layers whose outputs must keep their width (both halves when attention is kept whole)."""
        if any(isinstance(m, OpaqueAttention) and not m.stream_prunable for m in self.block.modules()):
            return [self.cv_a, self.cv_b]
        return []

    def merge(self) -> nn.Module:
        """Write the (pruned) halves back as the stock block's ``cv1``; returns the stock block."""
        from ultralytics.nn.modules import Conv

        a, b, block = self.cv_a, self.cv_b, self.block
        ca, cb = a.conv.out_channels, b.conv.out_channels
        if ca != cb:
            raise EdgepruneError(
                f"{type(block).__name__} halves were pruned to different widths ({ca} vs {cb}); "
                "the stock block needs equal halves"
            )
        merged = Conv(a.conv.in_channels, ca + cb, 1, 1)
        merged.conv.weight.data = torch.cat([a.conv.weight.data, b.conv.weight.data])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(merged.bn, name).data = torch.cat([getattr(a.bn, name).data, getattr(b.bn, name).data])
        merged.bn.eps, merged.bn.momentum, merged.bn.num_features = a.bn.eps, a.bn.momentum, ca + cb
        merged.train(self.training)
        block.cv1, block.c = merged, ca
        return block


class PartsSplit(nn.Module):
    """CBLinear (YOLOv9 e) with its conv, whose output is split by ``c2s``, run as one conv per part.

    Parts may end with different widths: ``merge`` writes the new sizes into ``c2s``.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        conv, start = block.conv, 0
        self.parts = nn.ModuleList()
        for c in block.c2s:
            part = nn.Conv2d(
                conv.in_channels, c, conv.kernel_size, conv.stride, conv.padding, groups=conv.groups
            )
            part.weight.data.copy_(conv.weight.data[start : start + c])
            part.bias.data.copy_(conv.bias.data[start : start + c])
            self.parts.append(part)
            start += c
        block.conv = nn.Identity()  # placeholder: keeps the module order for the merge
        self.block = block
        for attr in _ROUTING:
            if hasattr(block, attr):
                setattr(self, attr, getattr(block, attr))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(part(x) for part in self.parts)

    def kept(self) -> list[nn.Module]:
        return []

    def merge(self) -> nn.Module:
        first, block = self.parts[0], self.block
        conv = nn.Conv2d(
            first.in_channels,
            sum(p.out_channels for p in self.parts),
            first.kernel_size,
            first.stride,
            first.padding,
            groups=first.groups,
        )
        conv.weight.data = torch.cat([p.weight.data for p in self.parts])
        conv.bias.data = torch.cat([p.bias.data for p in self.parts])
        block.conv, block.c2s = conv, [p.out_channels for p in self.parts]
        return block


def _copy_conv(src: nn.Module, dst: nn.Module, rows: slice) -> None:
    """Copy output channels ``rows`` of an Ultralytics Conv (conv + BN) into ``dst``."""
    dst.conv.weight.data.copy_(src.conv.weight.data[rows])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst.bn, name).data.copy_(getattr(src.bn, name).data[rows])
    dst.bn.eps, dst.bn.momentum = src.bn.eps, src.bn.momentum


# --- attention as one graph node ------------------------------------------------------------
class _Opaque(torch.autograd.Function):
    """Run a module as a single autograd node: the graph sees input -> output, nothing inside.

    Backward recomputes the module with autograd on (as activation checkpointing does), so
    gradients reach both the input and the module's parameters.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, module: nn.Module) -> torch.Tensor:
        ctx.module = module
        ctx.save_for_backward(x)
        return module(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        (x,) = ctx.saved_tensors
        params = [p for p in ctx.module.parameters() if p.requires_grad]
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            grads = torch.autograd.grad(ctx.module(xg), [xg, *params], grad, allow_unused=True)
        for p, g in zip(params, grads[1:], strict=True):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        return grads[0], None


class OpaqueAttention(nn.Module):
    """An attention module seen by the dependency graph as one layer (see ``_attention_pruner``).

    ``stream_prunable``: its stream can lose whole heads (``Attention``, ``AAttn``); otherwise it
    is kept whole (AIFI). ``rank_by_gradients``: heads are ranked by Taylor importance (the
    criterion accumulated gradients), else by their weights' norm."""

    def __init__(self, attn: nn.Module, stream_prunable: bool, rank_by_gradients: bool = False):
        super().__init__()
        self.attn, self.stream_prunable, self.rank_by_gradients = attn, stream_prunable, rank_by_gradients
        # the stream width of a kept-whole module (AIFI has no qkv/proj convs but an embed_dim)
        self.width = attn.ma.embed_dim if hasattr(attn, "ma") else attn.proj.conv.out_channels
        for attr in _ROUTING:  # AIFI is a layer of its own in RT-DETR's layer list
            if hasattr(attn, attr):
                setattr(self, attr, getattr(attn, attr))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return _Opaque.apply(x, self.attn)
        return self.attn(x)

    @property
    def head_dim(self) -> int:
        """Channels per head: the stream's pruning step (its width when kept whole)."""
        return int(self.attn.head_dim) if self.stream_prunable else self.width

    def _head_rows(self) -> int:
        """``qkv`` output rows per head: q, k and v of one head are contiguous."""
        return self.attn.qkv.conv.out_channels // self.attn.num_heads

    def head_scores(self) -> torch.Tensor:
        """One importance per head, lower pruned first: ``sum |w * grad|`` over the head's ``qkv``
        rows and ``proj`` input columns with ``rank_by_gradients``, else their squared norm."""
        qkv, proj = self.attn.qkv.conv.weight, self.attn.proj.conv.weight
        heads, rows, hd = self.attn.num_heads, self._head_rows(), self.head_dim

        def per_head(w: torch.Tensor, dim: int, size: int) -> torch.Tensor:
            g = w.grad if self.rank_by_gradients else None
            score = (w * g).abs() if g is not None and g.shape == w.shape else w.square()
            score = score.detach().transpose(0, dim).reshape(heads, size, -1)
            return score.sum(dim=(1, 2))

        return per_head(qkv, 0, rows) + per_head(proj, 1, hd)

    def remove_heads(self, stream: list[int]) -> None:
        """Drop ``len(stream) // head_dim`` heads (the lowest ``head_scores``) and stream channels
        ``stream`` (of the ``qkv`` input and ``proj`` output)."""
        import torch_pruning as tp

        hd, attn = self.head_dim, self.attn
        if len(stream) % hd:
            raise EdgepruneError(
                f"{type(attn).__name__}: its stream loses whole heads of {hd} channels, not {len(stream)}"
            )
        k = len(stream) // hd
        if k >= attn.num_heads:
            raise EdgepruneError(f"{type(attn).__name__}: cannot remove all {attn.num_heads} heads")
        heads = sorted(int(h) for h in self.head_scores().argsort()[:k])
        rows = self._head_rows()
        qkv_rows = [h * rows + j for h in heads for j in range(rows)]
        values = [h * hd + j for h in heads for j in range(hd)]
        tp.prune_conv_in_channels(attn.qkv.conv, stream)
        tp.prune_conv_out_channels(attn.qkv.conv, qkv_rows)
        tp.prune_batchnorm_out_channels(attn.qkv.bn, qkv_rows)
        tp.prune_depthwise_conv_out_channels(attn.pe.conv, values)
        tp.prune_batchnorm_out_channels(attn.pe.bn, values)
        tp.prune_conv_in_channels(attn.proj.conv, values)
        tp.prune_conv_out_channels(attn.proj.conv, stream)
        tp.prune_batchnorm_out_channels(attn.proj.bn, stream)
        attn.num_heads -= k
        if hasattr(attn, "all_head_dim"):  # AAttn
            attn.all_head_dim = attn.num_heads * hd


def _attention_pruner() -> Any:
    import torch_pruning as tp

    class AttentionPruner(tp.pruner.function.BasePruningFunc):
        """Prunes the residual stream of an ``OpaqueAttention``, in whole heads."""

        TARGET_MODULES = OpaqueAttention

        def prune_channels(self, layer: OpaqueAttention, idxs: list[int]) -> nn.Module:
            if not layer.stream_prunable:
                raise EdgepruneError(f"{type(layer.attn).__name__} is kept whole and cannot be pruned")
            layer.remove_heads(sorted(int(i) for i in idxs))
            return layer

        # The stream in equals the stream out (a residual wraps every attention here): one function
        # for both tells torch-pruning they are coupled, so a kept-whole one blocks both sides.
        prune_out_channels = prune_channels
        prune_in_channels = prune_channels

        def get_out_channels(self, layer: OpaqueAttention) -> int:
            return layer.attn.proj.conv.out_channels if layer.stream_prunable else layer.width

        def get_in_channels(self, layer: OpaqueAttention) -> int:
            return layer.attn.qkv.conv.in_channels if layer.stream_prunable else layer.width

    return AttentionPruner()


# --- rewriting a model in place and back ------------------------------------------------------
class Rewrites:
    """The block rewrites applied to one model; ``undo`` restores stock Ultralytics modules."""

    def __init__(self) -> None:
        self._done: list[tuple[nn.Module, str, nn.Module]] = []  # (parent, name, prunable form)

    def apply(self, model: nn.Module, rank_by_gradients: bool = False, keep_heads: bool = False) -> Rewrites:
        """Rewrite ``model``'s blocks in place; ``keep_heads``: every attention is kept whole, as
        AIFI always is."""
        from ultralytics.nn.modules.block import AAttn, Attention
        from ultralytics.nn.modules.transformer import AIFI

        for parent in list(model.modules()):  # attention first: the halves check looks for it
            for name, child in list(parent.named_children()):
                if isinstance(child, (Attention, AAttn, AIFI)):
                    prunable = not keep_heads and isinstance(child, (Attention, AAttn))  # AIFI is kept whole
                    self._swap(parent, name, OpaqueAttention(child, prunable, rank_by_gradients))
        from ultralytics.nn.modules.block import CBLinear

        bodies = _split_bodies()
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                body = bodies.get(getattr(type(child), "forward", None))
                if body is not None and hasattr(child, "cv1"):
                    self._swap(parent, name, HalvesSplit(child, body))
                elif isinstance(child, CBLinear) and type(child).forward is CBLinear.forward:
                    self._swap(parent, name, PartsSplit(child))
        return self

    def _swap(self, parent: nn.Module, name: str, new: nn.Module) -> None:
        setattr(parent, name, new)
        self._done.append((parent, name, new))

    def kept(self) -> list[nn.Module]:
        """Layers that must keep their output width while the rewrites are in place."""
        kept: list[nn.Module] = []
        for _, _, new in self._done:
            if isinstance(new, (HalvesSplit, PartsSplit)):
                kept += new.kept()
            elif isinstance(new, OpaqueAttention) and not new.stream_prunable:
                kept.append(new)
        return kept

    def summary(self) -> dict[str, int]:
        """How many blocks of each stock class were rewritten, e.g. ``{"C3k2": 8, "AAttn": 4}``."""
        out: dict[str, int] = {}
        for _, _, new in self._done:
            inner = new.attn if isinstance(new, OpaqueAttention) else new.block
            out[type(inner).__name__] = out.get(type(inner).__name__, 0) + 1
        return out

    def undo(self) -> None:
        """Merge every prunable form back into its stock block (innermost last-applied first)."""
        errors = []
        for parent, name, new in reversed(self._done):
            try:
                setattr(parent, name, new.attn if isinstance(new, OpaqueAttention) else new.merge())
            except EdgepruneError as e:
                errors.append(str(e))
        self._done.clear()
        if errors:
            raise EdgepruneError("; ".join(errors))

    @staticmethod
    def customized_pruners() -> dict[type, Any]:
        return {OpaqueAttention: _attention_pruner()}


# --- inputs cut in halves ---------------------------------------------------------------------
def halved_inputs(model: nn.Module) -> dict[nn.Module, int]:
    """Convs reading one half of an input that a block cuts with ``chunk(2)`` (ADown, YOLOv9 c/e).

    No rewrite is needed: told that these inputs come in 2 channel groups, torch-pruning removes the
    same positions from both halves of the producer, so the stock ``chunk(2)`` still splits right.
    """
    from ultralytics.nn.modules.block import ADown

    groups: dict[nn.Module, int] = {}
    for m in model.modules():
        if isinstance(m, ADown) and type(m).forward is ADown.forward:
            groups[m.cv1.conv] = groups[m.cv2.conv] = 2
    return groups


# --- the head, traced as raw per-level maps ---------------------------------------------------
def head_outputs(head: nn.Module) -> list[nn.Module]:
    """The layers whose output channels are predictions (boxes, classes, masks, keypoints, angles)."""
    out: list[nn.Module] = []
    if hasattr(head, "input_proj") and hasattr(head, "decoder"):  # RT-DETR: the decoder's width stays
        return [proj[0] for proj in head.input_proj] + [head.decoder]
    for child in head.children():
        if isinstance(child, nn.ModuleList):
            for branch in child:
                last = branch[-1] if isinstance(branch, nn.Sequential) else branch
                if isinstance(last, nn.Conv2d):
                    out.append(last)
    proto = getattr(head, "proto", None)
    if proto is not None:
        out.append(proto.cv3)  # mask prototypes
        if getattr(proto, "semseg", None) is not None:
            out.append(proto.semseg[-1])  # YOLO26 semantic logits (training only)
    for name in ("dfl", "flow_model"):
        if isinstance(getattr(head, name, None), nn.Module):
            out.append(getattr(head, name))
    return out


def raw_trace_forward(model: nn.Module) -> Callable[[nn.Module, torch.Tensor], list[torch.Tensor]] | None:
    """A forward for graph tracing that stops at the head's raw maps, or None for unknown heads.

    The normal eval forward decodes boxes (anchors, DFL, top-k for end-to-end heads, RT-DETR's
    transformer decoder), which adds nothing to the channel graph but reshapes that slow the
    search. This runs every layer the stock way and then every branch of the head, train-only
    ones included (one2one, Pose26's sigma, Proto26's semantic logits), so each prunable conv is
    in the graph. RT-DETR's decoder is traced up to its input projections and kept whole.
    """
    from ultralytics.nn.modules.head import RTDETRDecoder

    head = model.model[-1]
    if isinstance(head, RTDETRDecoder):
        run_head = _rtdetr_raw
    elif type(head) in _known_heads():
        run_head = _yolo_raw
    else:
        return None

    def forward(module: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        y: list[Any] = []
        for m in module.model[:-1]:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x)
        h = module.model[-1]
        return run_head(h, [x if j == -1 else y[j] for j in h.f])

    return forward


def _rtdetr_raw(head: nn.Module, feats: list[torch.Tensor]) -> list[torch.Tensor]:
    return [proj(f) for proj, f in zip(head.input_proj, feats, strict=True)]


def _yolo_raw(head: nn.Module, feats: list[torch.Tensor]) -> list[torch.Tensor]:
    from ultralytics.nn.modules.block import Proto26

    outs: list[torch.Tensor] = []
    proto = getattr(head, "proto", None)
    flags = [(m, m.training) for m in (head, proto) if m is not None]
    head.training = True  # forward_head then returns train-only outputs too; children keep their mode
    try:
        e2e = getattr(head, "one2one_cv2", None) is not None
        for branches in (head.one2many, head.one2one) if e2e else (head.one2many,):
            preds = head.forward_head(feats, **branches)
            outs += [v for k, v in preds.items() if k != "feats" and isinstance(v, torch.Tensor)]
        if proto is not None:
            proto.training = True  # Proto26 adds its semantic logits
            p = proto(feats) if isinstance(proto, Proto26) else proto(feats[0])
            outs += list(p) if isinstance(p, (tuple, list)) else [p]
    finally:
        for m, flag in flags:
            m.training = flag
    return outs


def _known_heads() -> tuple[type, ...]:
    """Head classes whose ``forward_head`` covers every branch (Detect, v10Detect, Segment, Pose, OBB, *26)."""
    from ultralytics.nn.modules import head as H

    names = ("Detect", "v10Detect", "Segment", "Segment26", "Pose", "Pose26", "OBB", "OBB26")
    return tuple(getattr(H, n) for n in names if hasattr(H, n))
