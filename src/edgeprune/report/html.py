"""``report.html``: one self-contained page that shows why a run passed or failed.

A run is a folder of edgeprune's JSON files (``report.json`` of ``run``/``demo``, ``prune.json``,
``NAME.export.json``, a profile's JSON, ``analysis.json``); the page is drawn from them alone, so
``edgeprune report DIR`` redraws it any time, and several folders make one comparison. Everything
is inline (SVG plots, CSS): opened offline, the page fetches nothing.

Sections, each shown when its data is there:

* the verdict: target, budget, measured, margin, pass/fail, the machine's conditions, warnings;
* latency against mAP50-95: baseline, every search step and probe, the final model, other runs,
  the Pareto front;
* the latency distribution of each timed artifact against the budget;
* channels per layer before -> after, with each layer's share of MACs;
* AP per class and per object size before -> after, the largest losses named;
* sensitivity curves from ``analysis.json``;
* FP32 against FP16/INT8 artifacts where exports were measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.errors import EdgepruneError
from edgeprune.files import write_text_atomic
from edgeprune.report import figures
from edgeprune.report.figures import Point

HTML_NAME = "report.html"
CALLOUTS = 3  # classes named as having lost most


@dataclass
class Run:
    """The JSON files of one output folder, by kind."""

    folder: Path
    primary: dict[str, Any]  # report.json, else prune.json, else a profile's or an export's JSON
    primary_name: str
    exports: dict[str, dict[str, Any]] = field(default_factory=dict)
    analysis: dict[str, Any] | None = None
    history: dict[str, Any] | None = None  # the folder's report.json or prune.json, when not the primary

    @property
    def model_doc(self) -> dict[str, Any]:
        """Where the model's story is (search, layers, accuracy): the primary when it tells it, else
        the folder's report.json or prune.json (a profile or an export written after a prune)."""
        if any(k in self.primary for k in ("search", "pruning")) or self.history is None:
            return self.primary
        return self.history

    @property
    def name(self) -> str:
        return self.folder.name or str(self.folder)


def _kind(name: str, doc: dict[str, Any]) -> str | None:
    if "groups" in doc and "ratios" in doc:
        return "analysis"
    if "edgeprune_version" not in doc or "result" not in doc:
        return None  # not one of edgeprune's reports (a state file, a hosts list, ...)
    if name.endswith(".export.json"):
        return "export"
    return "report" if name == "report.json" else "prune" if name == "prune.json" else "profile"


def load_run(path: str | Path) -> Run:
    """The run in folder ``path``, or the run a JSON file ``path`` belongs to (its folder)."""
    path = Path(path)
    if not path.exists():
        raise EdgepruneError(
            f"{path}: no such file or folder; give an output folder of edgeprune or a report JSON"
        )
    folder = path if path.is_dir() else path.parent
    docs: dict[str, dict[str, dict[str, Any]]] = {}
    files = sorted(folder.glob("*.json")) if path.is_dir() else [path, *sorted(folder.glob("*.json"))]
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            if f == path:
                raise EdgepruneError(f"{f}: not a JSON report ({e})") from None
            continue
        kind = _kind(f.name, doc) if isinstance(doc, dict) else None
        if kind is not None:
            docs.setdefault(kind, {}).setdefault(f.name, doc)
    if path.is_file() and not any(path.name in by_name for by_name in docs.values()):
        raise EdgepruneError(f"{path}: not a report of edgeprune (no `edgeprune_version` and `result`)")
    order = ([path.name] if path.is_file() else []) + ["report.json", "prune.json"]
    for name in order:
        for kind in ("report", "prune", "profile", "export"):
            if name in docs.get(kind, {}):
                return _run(folder, docs, docs[kind][name], name)
    for kind in ("profile", "export"):
        if docs.get(kind):
            name, doc = next(iter(docs[kind].items()))
            return _run(folder, docs, doc, name)
    raise EdgepruneError(
        f"{folder}: no report of edgeprune here (report.json, prune.json, *.export.json or a profile's --json)"
    )


def _run(folder: Path, docs: dict[str, Any], primary: dict[str, Any], name: str) -> Run:
    analysis = next(iter(docs.get("analysis", {}).values()), None)
    for candidate in (folder / "analysis.json", folder / "analysis" / "analysis.json"):
        if analysis is None and candidate.is_file():
            try:
                doc = json.loads(candidate.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            analysis = doc if isinstance(doc, dict) and _kind(candidate.name, doc) == "analysis" else None
    history = docs.get("report", {}).get("report.json") or docs.get("prune", {}).get("prune.json")
    return Run(
        folder,
        primary,
        name,
        dict(docs.get("export", {})),
        analysis,
        history if history is not primary else None,
    )


# --- sections ------------------------------------------------------------------------------------
def _latency(block: dict[str, Any] | None, percentile: str) -> float | None:
    if not block:
        return None
    stats = block.get("latency_ms")
    if isinstance(stats, dict) and stats.get(percentile) is not None:
        return float(stats[percentile])
    return block.get("measured_ms")


def _map(block: dict[str, Any] | None) -> float | None:
    value = ((block or {}).get("metrics") or {}).get("map50_95")
    return float(value) if value is not None else None


def verdict_card(run: Run) -> dict[str, Any]:
    doc = run.primary
    budget = doc.get("budget") or {}
    verdict = doc.get("verdict") or {}
    warnings = list(doc.get("warnings") or [])
    collapse = ((doc.get("result") or {}).get("parity") or {}).get("collapsed")
    if collapse and not any("collapsed" in str(w) for w in warnings):
        warnings.append("the artifact's detections collapsed against PyTorch's (see parity)")
    return {
        "target": doc.get("target"),
        "budget_ms": verdict.get("budget_ms", budget.get("latency_ms")),
        "percentile": verdict.get("percentile", budget.get("percentile")),
        "scope": budget.get("scope", "engine"),
        "measured_ms": verdict.get("latency_ms"),
        "margin_ms": verdict.get("margin_ms"),
        "passed": doc.get("passed"),
        "budget_rule": doc.get("budget_rule"),
        "speedup": doc.get("speedup_p50"),
        "map_kept": doc.get("map_kept"),
        "environment": doc.get("environment") or {},
        "warnings": warnings,
        "message": doc.get("message"),
        "source": run.primary_name,
    }


def search_points(run: Run, percentile: str) -> list[Point]:
    doc = run.model_doc
    points: list[Point] = []
    base = doc.get("baseline")
    if _latency(base, percentile) is not None:
        points.append(Point("baseline", _latency(base, percentile), _map(base), "baseline"))  # type: ignore[arg-type]
    search = doc.get("search") or {}
    for probe in search.get("probes", []):
        points.append(Point(f"probe {probe['step']}", probe["measured_ms"], None, "probe"))
    for step in search.get("steps", []):
        points.append(
            Point(
                f"step {step['step']}",
                step["measured_ms"],
                (step.get("metrics") or {}).get("map50_95"),
                "step",
            )
        )
    result = doc.get("result")
    ms = _latency(result, percentile)
    if ms is None and doc is not run.primary:  # a prune by ratio, then `profile --json` of its artifact
        ms = _latency(run.primary.get("result"), percentile)
    if ms is not None:
        points.append(Point("final", ms, _map(result), "final"))
    return points


def run_point(run: Run, percentile: str) -> Point | None:
    """Another run's final model, for a comparison."""
    ms = _latency(run.primary.get("result"), percentile)
    return Point(run.name, ms, _map(run.primary.get("result")), "run") if ms is not None else None


def accuracy_breakdown(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    """Per class and per size, before and after, with the largest losses first."""
    b_cls = {c["class"]: c for c in before.get("per_class") or []}
    a_cls = {c["class"]: c for c in after.get("per_class") or []}
    if not b_cls and not a_cls:
        return None
    b_size, a_size = before.get("by_size") or {}, after.get("by_size") or {}
    names = list(b_cls) + [n for n in a_cls if n not in b_cls]
    classes = [_change(name, b_cls.get(name, {}), a_cls.get(name, {})) for name in names]
    sizes = [
        _change(name, b_size.get(name, {}), a_size.get(name, {})) for name in ("small", "medium", "large")
    ]
    losers = sorted((c for c in classes if c["change"] is not None), key=lambda c: c["change"])[:CALLOUTS]
    size_losers = sorted((s for s in sizes if s["change"] is not None), key=lambda s: s["change"])[:1]
    return {
        "classes": classes, "sizes": sizes,
        "lost_most": [c for c in losers if c["change"] < 0],
        "size_lost_most": [s for s in size_losers if s["change"] < 0],
    }  # fmt: skip


def _change(name: str, b: dict[str, Any], a: dict[str, Any]) -> dict[str, Any]:
    """One class's or size's AP50-95 before and after."""
    bv, av = b.get("map50_95"), a.get("map50_95")
    return {
        "name": name, "instances": b.get("instances", a.get("instances")), "before": bv, "after": av,
        "change": av - bv if av is not None and bv is not None else None,
    }  # fmt: skip


def precision_rows(run: Run) -> list[dict[str, Any]]:
    """The measured exports: precision, size, mAP of PyTorch and of the artifact."""
    rows = []
    summary = run.primary.get("int8_vs_fp32_baseline")
    if summary:
        rows.append({
            "artifact": Path(summary["fp32_baseline_artifact"]).name, "precision": "fp32", "model": "baseline",
            "size_mb": summary["fp32_baseline_mb"], "map_pytorch": summary["fp32_baseline_map50_95"], "map_artifact": None,
        })  # fmt: skip
        rows.append({
            "artifact": Path((run.primary.get("result") or {}).get("artifact", "pruned")).name, "precision": "int8",
            "model": "pruned", "size_mb": summary["int8_pruned_mb"], "map_pytorch": _map(run.primary.get("result")),
            "map_artifact": summary["int8_pruned_map50_95"],
        })  # fmt: skip
    for name, doc in run.exports.items():
        details = doc.get("export") or {}
        result = doc.get("result") or {}
        rows.append({
            "artifact": Path(result.get("artifact", name)).name,
            "precision": details.get("precision") or _precision_of(doc), "model": name.removesuffix(".export.json"),
            "size_mb": result.get("size_mb"), "map_pytorch": _map(doc.get("baseline")), "map_artifact": _map(result),
        })  # fmt: skip
    return rows


def _precision_of(doc: dict[str, Any]) -> str | None:
    target = str(doc.get("target") or "")
    return next((p for p in ("int8", "fp16", "fp32") if p in target), None)


def control_steps(run: Run) -> list[dict[str, Any]]:
    control = run.primary.get("accuracy_control") or next(
        ((d.get("export") or {}).get("accuracy_control") for d in run.exports.values()
         if (d.get("export") or {}).get("accuracy_control")), None,
    )  # fmt: skip
    return list((control or {}).get("steps") or [])


# --- the page ------------------------------------------------------------------------------------
def render(runs: list[Run]) -> str:
    """The page for ``runs``: the first in full, the others as points of comparison."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    if not runs:
        raise EdgepruneError("no run to report: give at least one output folder or report JSON")
    run = runs[0]
    card = verdict_card(run)
    percentile = card["percentile"] or "p50"
    points = search_points(run, percentile) + [p for r in runs[1:] if (p := run_point(r, percentile))]
    doc = run.model_doc
    base, result = doc.get("baseline") or {}, doc.get("result") or {}
    layers = (doc.get("search") or {}).get("layers") or (doc.get("pruning") or {}).get("layers") or []
    own = run.primary.get("result") or {}
    if run.primary_name.endswith(".export.json") and (own.get("metrics") or {}).get("per_class"):
        before_label, after_label = "PyTorch", "artifact"  # the export's own comparison
        breakdown = accuracy_breakdown(
            (run.primary.get("baseline") or {}).get("metrics") or {}, own["metrics"]
        )
    else:
        before_label, after_label = "baseline", "pruned"
        breakdown = accuracy_breakdown(base.get("metrics") or {}, result.get("metrics") or {})
    histograms = {
        k: v for k, v in (("baseline", base.get("latency_histogram")), ("pruned", result.get("latency_histogram")),
                          (f"profiled: {Path(str(own.get('artifact', ''))).name}", own.get("latency_histogram")
                           if run.model_doc is not run.primary else None))
        if v
    }  # fmt: skip
    env = Environment(loader=PackageLoader("edgeprune.report", "templates"), autoescape=True,
                      undefined=StrictUndefined)  # fmt: skip
    env.filters["ms"] = lambda v: "-" if v is None else f"{v:.3f}"
    env.filters["ap"] = lambda v: "-" if v is None else f"{v:.3f}"
    env.filters["points"] = lambda v: "-" if v is None else f"{100 * v:+.1f}"
    env.filters["pct"] = lambda v: "-" if v is None else f"{v:.1%}"
    return env.get_template("report.html.j2").render(
        title=f"edgeprune report: {run.name}",
        card=card,
        run=run,
        others=runs[1:],
        comparison=[
            {"name": r.name, "card": verdict_card(r), "map50_95": _map(r.primary.get("result"))} for r in runs
        ],
        figures={
            "latency_accuracy": figures.latency_accuracy(points, card["budget_ms"], percentile),
            "distribution": figures.latency_distributions(histograms, card["budget_ms"]),
            "layers": figures.layer_channels(layers),
            "classes": breakdown
            and figures.accuracy_bars(
                [(c["name"], c["before"], c["after"]) for c in breakdown["classes"]],
                before_label,
                after_label,
                "AP50-95",
            ),
            "sizes": breakdown
            and figures.accuracy_bars(
                [(s["name"], s["before"], s["after"]) for s in breakdown["sizes"]],
                before_label,
                after_label,
                "AP50-95",
            ),
            "sensitivity": figures.sensitivity(
                run.analysis["groups"], ((run.analysis.get("baseline") or {}).get("map50_95"))
            )
            if run.analysis and isinstance(run.analysis.get("groups"), list)
            else None,
        },
        breakdown=breakdown,
        before_label=before_label,
        after_label=after_label,
        layers_changed=sum(1 for layer in layers if layer["after"] != layer["before"]),
        layers_total=len(layers),
        precision_rows=precision_rows(run),
        control_steps=control_steps(run),
        points=points,
    )


def write_html(runs: list[Run], path: str | Path) -> Path:
    """Render ``runs`` and write the page atomically."""
    return write_text_atomic(path, render(runs))


def write_beside(json_path: str | Path) -> Path:
    """``report.html`` next to a report JSON just written, from its folder's reports."""
    json_path = Path(json_path)
    return write_html([load_run(json_path)], json_path.parent / HTML_NAME)
