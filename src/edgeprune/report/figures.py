"""The HTML report's plots: matplotlib figures drawn without pyplot (no global backend, no window)
and returned as inline SVG. Text is drawn as paths from matplotlib's own DejaVu fonts, so a report
looks the same in any browser and nothing is fetched to show it."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PALETTE = {"baseline": "#6b7280", "step": "#2563eb", "final": "#dc2626", "run": "#059669", "probe": "#9ca3af"}
_RC = {"svg.fonttype": "path", "font.family": "DejaVu Sans", "font.size": 9, "axes.spines.top": False,
       "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3}  # fmt: skip


@dataclass(frozen=True)
class Point:
    """One model on the latency-accuracy plane."""

    label: str
    ms: float
    map50_95: float | None  # None: timed but not evaluated (a search probe)
    kind: str  # baseline, step, final, run or probe


def _figure(width: float = 6.4, height: float = 3.6) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Any) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "edgeprune"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: no XML prolog or DOCTYPE


def styled(draw: Any) -> Any:
    """Run a drawing function under the report's matplotlib style."""

    def wrapper(*args: Any, **kwargs: Any) -> str | None:
        import matplotlib

        with matplotlib.rc_context(_RC):
            return draw(*args, **kwargs)

    return wrapper


def pareto(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats on both latency (lower) and mAP (higher), fastest first."""
    scored = sorted((p for p in points if p.map50_95 is not None), key=lambda p: (p.ms, -(p.map50_95 or 0)))
    front: list[Point] = []
    for p in scored:
        if not front or (p.map50_95 or 0) > (front[-1].map50_95 or 0):
            front.append(p)
    return front


@styled
def latency_accuracy(points: Sequence[Point], budget_ms: float | None, percentile: str) -> str | None:
    """mAP50-95 against latency: baseline, each search step, the final model, other runs; probes
    (timed, never evaluated) as ticks along the bottom; the Pareto front as a dashed line."""
    if not points:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    scored = [p for p in points if p.map50_95 is not None]
    path = [p for p in scored if p.kind in ("baseline", "step", "final")]
    if len(path) > 1:
        ax.plot([p.ms for p in path], [p.map50_95 for p in path], color=PALETTE["step"], lw=1, alpha=0.5)
    for kind, marker, size in (
        ("baseline", "s", 60),
        ("step", "o", 40),
        ("run", "D", 45),
        ("final", "*", 160),
    ):
        chosen = [p for p in scored if p.kind == kind]
        if chosen:
            ax.scatter([p.ms for p in chosen], [p.map50_95 for p in chosen], s=size, marker=marker,
                       color=PALETTE[kind], label=kind if kind != "run" else "other runs", zorder=3)  # fmt: skip
        for p in chosen:
            ax.annotate(p.label, (p.ms, p.map50_95), textcoords="offset points", xytext=(5, 4), fontsize=7)
    front = pareto(scored)
    if len(front) > 1:
        ax.plot([p.ms for p in front], [p.map50_95 for p in front], ls="--", color="#111827", lw=1,
                label="Pareto front", zorder=2)  # fmt: skip
    probes = [p for p in points if p.kind == "probe"]
    if probes:
        ax.plot([p.ms for p in probes], [0.02] * len(probes), "|", ms=12, color=PALETTE["probe"],
                transform=ax.get_xaxis_transform(), label=f"probes ({len(probes)}; timed, not evaluated)")  # fmt: skip
    if budget_ms is not None:
        ax.axvline(budget_ms, color=PALETTE["final"], ls=":", lw=1.2, label=f"budget {budget_ms:.2f} ms")
    if not scored:
        ax.set_yticks([])
    ax.set_xlabel(f"latency, ms ({percentile})")
    ax.set_ylabel("mAP50-95")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot: it hides no point
    return _svg(fig)


@styled
def latency_distributions(
    histograms: dict[str, dict[str, list[float]]], budget_ms: float | None
) -> str | None:
    """Each timed artifact's latency histogram, with the budget line."""
    histograms = {k: h for k, h in histograms.items() if h and h.get("counts")}
    if not histograms:
        return None
    fig = _figure(6.4, 1.2 + 1.1 * len(histograms))
    axes = fig.subplots(len(histograms), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, h) in zip(axes, histograms.items(), strict=True):
        edges, counts = h["edges_ms"], h["counts"]
        widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
        ax.bar(edges[:-1], counts, width=widths, align="edge", color=PALETTE["step"], alpha=0.75)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([])
        if budget_ms is not None:
            ax.axvline(budget_ms, color=PALETTE["final"], ls=":", lw=1.2)
    axes[-1].set_xlabel(
        "latency, ms per run" + (f" (dotted: budget {budget_ms:.2f} ms)" if budget_ms else "")
    )
    return _svg(fig)


@styled
def layer_channels(layers: list[dict[str, Any]], limit: int = 40) -> str | None:
    """Channels before -> after of the layers that changed (the ``limit`` that lost most), with
    each layer's share of the model's MACs before and after."""
    changed = [layer for layer in layers if layer["after"] != layer["before"]]
    if not changed:
        return None
    changed = sorted(changed, key=lambda layer: layer["after"] / max(1, layer["before"]))[:limit]
    changed.sort(key=lambda layer: _layer_order(layer["name"]))
    total_before = sum(layer.get("macs_before", 0) for layer in layers) or 1
    total_after = sum(layer.get("macs_after", 0) for layer in layers) or 1
    fig = _figure(6.4, 1.0 + 0.16 * len(changed))
    ax, share = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    y = list(range(len(changed)))
    ax.barh(y, [layer["before"] for layer in changed], color="#d1d5db", label="before")
    ax.barh(y, [layer["after"] for layer in changed], color=PALETTE["step"], label="after")
    ax.set_yticks(y, [layer["name"] for layer in changed], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("output channels")
    ax.legend(fontsize=7, loc="lower right")
    if any(layer.get("macs_before") for layer in changed):
        h = 0.4
        share.barh([v - h / 2 for v in y], [100 * layer.get("macs_before", 0) / total_before for layer in changed],
                   height=h, color="#d1d5db", label="before")  # fmt: skip
        share.barh([v + h / 2 for v in y], [100 * layer.get("macs_after", 0) / total_after for layer in changed],
                   height=h, color=PALETTE["step"], label="after")  # fmt: skip
        share.set_xlabel("share of the model's MACs, %")
    else:
        share.set_visible(False)
    return _svg(fig)


def _layer_order(name: str) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in name.split("."))


@styled
def sensitivity(
    groups: list[dict[str, Any]], baseline_map: float | None = None, label_top: int = 6
) -> str | None:
    """From ``analysis.json``: each group's accuracy cost against the latency it saves when pruned
    alone at each ratio; the groups that cost most per ms saved (at their largest ratio: mAP lost
    below ``baseline_map``, or the proxy loss's rise) are named."""
    use_map = baseline_map is not None and any(
        isinstance(pt, dict) and pt.get("map50_95") is not None for g in groups for pt in g.get("points", [])
    )
    curves = []
    for g in groups:
        if not isinstance(g, dict) or "name" not in g:
            continue
        pts = [pt for pt in g.get("points", []) if isinstance(pt, dict) and pt.get("saved_ms") is not None]
        cost = [(pt["map50_95"] if use_map else pt.get("delta_loss")) for pt in pts]
        if pts and all(c is not None for c in cost):
            curves.append((g["name"], [pt["saved_ms"] for pt in pts], cost))
    if not curves:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for _name, saved, cost in curves:
        ax.plot(saved, cost, "-o", ms=2, lw=0.8, color=PALETTE["step"], alpha=0.35)

    def lost(c: tuple[str, list[float], list[float]]) -> float:
        return (baseline_map - c[2][-1]) if use_map and baseline_map is not None else max(c[2][-1], 0.0)

    per_ms = sorted(curves, key=lambda c: -lost(c) / max(c[1][-1], 1e-6))
    for name, saved, cost in per_ms[:label_top]:
        ax.plot(saved, cost, "-o", ms=3, lw=1.2, color=PALETTE["final"])
        ax.annotate(name, (saved[-1], cost[-1]), textcoords="offset points", xytext=(4, 2), fontsize=6)
    ax.set_xlabel("latency saved when pruned alone, ms")
    ax.set_ylabel("mAP50-95 when pruned alone" if use_map else "accuracy proxy: loss increase")
    return _svg(fig)


@styled
def accuracy_bars(
    rows: list[tuple[str, float | None, float | None]], before: str, after: str, ylabel: str
) -> str | None:
    """Grouped bars of AP before and after, one pair per class or object size."""
    rows = [r for r in rows if r[1] is not None or r[2] is not None]
    if not rows:
        return None
    fig = _figure(max(4.0, min(9.0, 0.35 * len(rows) + 2)), 2.8)
    ax = fig.add_subplot()
    x = list(range(len(rows)))
    w = 0.4
    ax.bar([v - w / 2 for v in x], [r[1] or 0 for r in rows], width=w, color="#9ca3af", label=before)
    ax.bar([v + w / 2 for v in x], [r[2] or 0 for r in rows], width=w, color=PALETTE["step"], label=after)
    ax.set_xticks(x, [r[0] for r in rows], rotation=45 if len(rows) > 6 else 0, ha="right" if len(rows) > 6 else "center",
                  fontsize=7)  # fmt: skip
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return _svg(fig)
