"""The data-efficiency evaluator's part of its report section: success by demo count × initialisation."""
from __future__ import annotations

from collections import defaultdict

from pxp.experiment import plots
from pxp.experiment.report import by_policy, position_figures
from pxp.experiment.stats import pct, wpct


def data_efficiency_figures(report, doc, name: str, eps: list, summary: dict) -> None:
    """Positions and outcomes, then success and weighted score by demo count × initialisation (the seed's layout)."""
    position_figures(report, doc, name, eps, summary)
    spec, groups = report.spec, by_policy(eps)
    (best, second), rate = report.outcomes.names[:2], report.outcomes.success_rate  # the seed's P and G columns
    rows, series, cells = [], defaultdict(list), {}
    inits = list(dict.fromkeys(_init_of(spec, kv) for kv in groups.items()))  # the evaluator's order
    for pol, eps in sorted(groups.items(), key=lambda kv: (inits.index(_init_of(spec, kv)), _demos(spec, kv[0]) or 0)):
        s = report.score(eps)
        label = f"{report.label(pol)} {_init_of(spec, (pol, eps))}"
        demos = _demos(spec, pol)
        rows.append([label, demos if demos is not None else "all", s["counts"][best], s["counts"][second], s["n"],
                     pct(s[rate]), wpct(s["weighted"])])
        cells[(demos if demos is not None else "all", label)] = s
        if demos is not None and s["n"]:
            series[label].append((demos, s[rate]["rate"], *s[rate]["ci"]))
    doc.h(3, "Success and weighted score by demo count")
    doc.table(["Policy", "Demos", "P", "G", "n", "Binary (95% CI)", "Weighted (95% CI)"], rows)
    weights = ", ".join(f"{o} = {w:g}" for o, w in report.outcomes.weights.items() if w)
    _pivot(doc, cells, f"Binary success ({best}) by demo count × initialisation", lambda s: pct(s[rate]))
    _pivot(doc, cells, f"Weighted score ({weights}) by demo count × initialisation", lambda s: wpct(s["weighted"]))
    doc.img(report.rel(plots.rate_curves(dict(series), report.plots / f"{name}_curves.png", "demos",
                                            "success vs demo count")), "success vs demo count")


def _pivot(doc, cells: dict, title: str, fmt) -> None:
    """The seed's layout: one row per demo count, one column per (head, initialisation)."""
    cols = list(dict.fromkeys(label for _, label in cells))
    demos = sorted({d for d, _ in cells}, key=lambda d: (d == "all", d if d != "all" else 0))
    doc.h(4, title)
    doc.table(["Demos"] + cols, [[d] + [fmt(cells[(d, c)]) if (d, c) in cells else "" for c in cols] for d in demos])


def _init_of(spec: dict, item) -> str:
    """The initialisation label the evaluator gave the policy's episodes (the spec's key, e.g. "upper
    bound"), else one derived from its init_from."""
    pol, eps = item
    labels = next((e.get("labels") for e in eps if (e.get("labels") or {}).get("init")), None)
    return labels["init"] if labels else _init_label(spec, pol)


def _demos(spec: dict, pol: str):
    return spec["policies"].get(pol, {}).get("demos")


def _init_label(spec: dict, pol: str) -> str:
    src = spec["policies"].get(pol, {}).get("init_from")
    if not src:
        return "scratch"
    obj = spec["policies"].get(src, {}).get("objective", {}).get("type", "")
    return {"point_track_2d": "2D-pt", "behavior_cloning": "3D-pt"}.get(obj, f"from {src}")
