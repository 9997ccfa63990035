"""Matplotlib figures for reports (Agg backend; every function writes one PNG and returns its path)."""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np



def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from pxp.core import io

    path = Path(path)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)
    return path


def _colours(names) -> dict:
    """A colour per name: matplotlib's 10-colour cycle, or tab20 beyond 10 names (a sweep's 30 policies)."""
    names = list(names)
    if len(names) <= 10:
        return {n: f"C{i}" for i, n in enumerate(names)}
    cmap = _plt().get_cmap("tab20")
    return {n: cmap(i % 20) for i, n in enumerate(names)}


def _legend(ax, entries: int, fontsize: int = 7) -> None:
    """Inside the axes for a few entries; beside them for many, where it would cover the curves."""
    if entries <= 8:
        ax.legend(fontsize=fontsize)
    else:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 + entries // 24, frameon=False)


def _workspace_axes(ax, extent=None):
    # Oriented like the default agentview image (the camera faces the robot): world +y is image right,
    # and the robot is at the top, so dx (towards the camera) grows downwards. "left"/"right" and
    # "near"/"far" splits then appear where their names say.
    ax.set_xlabel("dy (m)  → image right")
    ax.set_ylabel("dx (m)  ↓ away from the robot")
    if extent:
        (x0, x1), (y0, y1) = extent
        ax.set_xlim(y0 - 0.03, y1 + 0.03)
        ax.set_ylim(x1 + 0.03, x0 - 0.03)
    else:
        ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)


def position_map(train_offsets, test_offsets, path, title="", extent=None) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    tr, te = np.asarray(train_offsets).reshape(-1, 2), np.asarray(test_offsets).reshape(-1, 2)
    if len(tr):
        ax.scatter(tr[:, 1], tr[:, 0], c="#2ca02c", s=22, label=f"train ({len(tr)})")
    if len(te):
        ax.scatter(te[:, 1], te[:, 0], c="#1f77b4", s=40, marker="s", label=f"test ({len(te)})")
    _workspace_axes(ax, extent)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or "train (green) and test (blue) positions", fontsize=9)
    return _save(fig, path)


def outcome_grid(episodes, path, outcomes, title="", extent=None) -> Path:
    """One marker per test position, coloured by its most common outcome (the scene's ``outcomes``; ties go to
    the better one), labelled successes/episodes."""
    plt = _plt()
    by_pos = defaultdict(list)
    for e in episodes:
        if e.get("offset") is not None:
            by_pos[tuple(np.round(e["offset"], 4))].append(e.get("outcome") or "ERROR")
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for (dx, dy), outs in by_pos.items():
        best = max(Counter(outs).items(), key=lambda kv: (kv[1], outcomes.weights.get(kv[0], -1)))[0]
        ax.scatter([dy], [dx], c=outcomes.colours[best], s=160, marker="s", edgecolors="k", linewidths=0.5)
        ax.annotate(f"{outs.count(outcomes.success)}/{len(outs)}", (dy, dx), ha="center", va="center", fontsize=6)
    _workspace_axes(ax, extent)
    ax.set_title(title or "outcomes per position", fontsize=9)
    return _save(fig, path)


def viewpoint_polar(episodes, path, outcomes, title="", theta_max=25.0) -> Path:
    """θ as the radius, φ as the angle; colour = success rate at that viewpoint; the train view is θ = 0."""
    plt = _plt()
    by_view = defaultdict(list)
    for e in episodes:
        if e.get("view") is not None:
            by_view[tuple(np.round(e["view"], 3))].append(e.get("outcome") == outcomes.success)
    fig = plt.figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot(projection="polar")
    if by_view:
        th, ph = np.array(list(by_view)).T
        rate = np.array([np.mean(v) for v in by_view.values()])
        sc = ax.scatter(np.deg2rad(ph), th, c=rate, cmap="RdYlGn", vmin=0, vmax=1, s=60, edgecolors="k", linewidths=0.4)
        fig.colorbar(sc, ax=ax, shrink=0.7, label="success")
    ax.scatter([0], [0], c="#2ca02c", s=90, marker="*", label="train view")
    ax.set_ylim(0, theta_max * 1.05)
    ax.set_title(title or "success per viewpoint (radius θ°, angle φ)", fontsize=9)
    return _save(fig, path)


def rate_curves(series: dict, path, xlabel: str, title="", ylabel="success rate") -> Path:
    """``series``: name → list of (x, rate, lo, hi); drawn with their 95% intervals."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, pts in series.items():
        if not pts:
            continue
        x, r, lo, hi = (np.array(v, dtype=float) for v in zip(*sorted(pts)))
        ax.plot(x, r, marker="o", label=name)
        ax.fill_between(x, lo, hi, alpha=0.15)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def training_curves(metrics: dict, path) -> Path:
    """``metrics``: policy → metrics.jsonl records; plots the training loss (log scale) per policy."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    colours = _colours(metrics)
    for name, rows in metrics.items():
        pts = [(r["step"], r["loss"]) for r in rows
               if r.get("split", "train") == "train" and "step" in r and isinstance(r.get("loss"), (int, float))]
        if pts:
            s, l = zip(*pts)
            ax.plot(s, l, label=name, lw=1, color=colours[name])
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    _legend(ax, len(metrics))
    return _save(fig, path)


PROBE_ERROR_CAP_CM = 60.0  # probe plots clip errors here (▲ marks a clipped point)


def probe_axis(samples, axis: str, train_ranges: dict, path, xlabel: str = "") -> Path:
    """The probe along one axis (``pxp probe``). Positions: grasp target coordinate per policy against
    the expert's (dashed black; a policy that follows the object lies on it), then the error in cm;
    each policy's training range is shaded in its colour. Viewpoints: error against θ, one marker per φ."""
    plt = _plt()
    names = list(dict.fromkeys(s["policy"] for s in samples))
    colours = _colours(names)
    views = axis == "view"
    fig, axes = plt.subplots(1, 1 if views else 2, figsize=(5.5 if views else 10, 3.8), squeeze=False)
    err_ax = axes[0, -1]
    top = min(PROBE_ERROR_CAP_CM, 1.08 * max([s["error_cm"] for s in samples] + [1.0]))
    for name in names:
        rows = sorted((s for s in samples if s["policy"] == name), key=lambda s: s["position"])
        x = np.array([s["position"] for s in rows])
        err = np.array([s["error_cm"] for s in rows])
        shown = np.minimum(err, top)  # a prediction metres off would flatten every other curve
        if views:
            thetas = sorted(set(x))
            err_ax.scatter(x, shown, color=colours[name], s=14, alpha=0.6)
            err_ax.plot(thetas, [min(np.median(err[x == t]), top) for t in thetas], color=colours[name], marker="o",
                        label=f"{name} (median over φ)")
        else:
            err_ax.plot(x, shown, color=colours[name], marker="o", label=name)
            err_ax.plot(x, np.minimum([s["error_any_cm"] for s in rows], top), color=colours[name], ls=":", lw=1)
            k = 0 if axis == "x" else 1
            axes[0, 0].plot(x, [s["predicted"][k] for s in rows], color=colours[name], marker="o", label=name)
        off = err > top
        err_ax.scatter(x[off], np.full(off.sum(), top), color=colours[name], marker="^", s=40, zorder=5)
        rng = train_ranges.get(name)
        if rng is not None:
            lo, hi = rng
            pad = 0.4 if views else 0.004  # a single training value still shows as a band
            for ax in axes[0]:
                ax.axvspan(lo - pad, hi + pad, color=colours[name], alpha=0.12, lw=0)
    if not views:
        k = 0 if axis == "x" else 1
        ref = sorted({(s["position"], s["true"][k]) for s in samples})
        axes[0, 0].plot(*zip(*ref), color="k", ls="--", lw=1, label="expert's grasp")
        axes[0, 0].set_ylabel(f"grasp target {'x' if k == 0 else 'y'} (world m)")
        axes[0, 0].set_xlabel(xlabel)
        axes[0, 0].set_title("predicted grasp target vs the expert's", fontsize=9)
        axes[0, 0].grid(alpha=0.3)
        if len(names) <= 8:  # with many policies the error panel's legend (beside it) names them all
            axes[0, 0].legend(fontsize=7)
    if not views:
        true = [s["true"][k] for s in samples]
        axes[0, 0].set_ylim(min(true) - 0.25, max(true) + 0.25)  # predictions far outside are clipped
    err_ax.set_xlabel(xlabel)
    clipped = any(s["error_cm"] > top for s in samples)
    err_ax.set_ylabel("grasp target error, xy (cm" + (f"; ▲ ≥ {top:.0f})" if clipped else ")"))
    err_ax.set_ylim(0, top * 1.04)
    err_ax.grid(alpha=0.3)
    _legend(err_ax, len(names))
    note = "" if views else "; dotted: to the nearest rim side"
    err_ax.set_title(f"error vs {'θ' if views else 'position'} (shaded: training range{note})", fontsize=9)
    return _save(fig, path)
