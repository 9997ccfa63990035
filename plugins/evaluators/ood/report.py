"""The viewpoint evaluator's part of its report section: success per θ and per viewpoint."""
from __future__ import annotations

from pxp.experiment import plots
from pxp.experiment.report import by_policy


def viewpoint_figures(report, doc, name: str, eps: list, summary: dict) -> None:
    """Success per θ (a table and curves, 95% intervals) and each policy's success per viewpoint (polar)."""
    groups = by_policy(eps)
    if not any(e.get("view") is not None for e in eps):
        return
    thetas = sorted({round(e["view"][0], 1) for eps in groups.values() for e in eps if e.get("view") is not None})
    rows, series, rate = [], {}, report.outcomes.success_rate
    for pol, eps in groups.items():
        row, pts = [pol], []
        for th in thetas:
            s = report.score(e for e in eps if e.get("view") and round(e["view"][0], 1) == th)
            row.append(f"{100 * s[rate]['rate']:.0f}% (n={s['n']})" if s["n"] else "–")
            if s["n"]:
                pts.append((th, s[rate]["rate"], *s[rate]["ci"]))
        rows.append(row)
        series[pol] = pts
    doc.h(3, "Success per θ (averaged over φ)")
    doc.table(["Policy"] + [f"θ={t:g}°" for t in thetas], rows)
    doc.img(report.rel(plots.rate_curves(series, report.plots / f"{name}_per_theta.png", "θ (degrees)",
                                            "success per θ, 95% intervals")), "success per θ")
    for pol, eps in groups.items():
        doc.img(report.rel(plots.viewpoint_polar(eps, report.plots / f"{name}_{pol}_polar.png", report.outcomes, f"{pol}")),
                f"{pol}: success per viewpoint (star: training view)")
