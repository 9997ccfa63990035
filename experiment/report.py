"""report.md + report.html for a run directory: tables in the seed's format, plots, videos, provenance.

The report is rebuilt from files alone (results.json, manifest.json, spec.resolved.yaml, stage markers,
metrics.jsonl), so ``pxp eval`` or a re-run can regenerate it. Every rate carries its 95% interval and n.
"""
from __future__ import annotations

import html
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from pxp.core import io
from . import plots, stats

AXIS = {"position_split": "Object position", "viewpoint_grid": "Camera viewpoint",
        "distractors": "Visual clutter", "data_efficiency": "Demo count"}
SMOKE_BANNER = ("SMOKE RUN (pxp run --smoke): every size shrunk (64 px images, tiny random-init backbones, a few "
                "cells, steps and episodes). It shows that every stage runs; its numbers mean nothing.")
FAMILY = {"para_volume": "PARA", "act_regression": "ACT"}


# ---------------------------------------------------------------- blocks → markdown / html

class Doc:
    def __init__(self):
        self.blocks: list[tuple] = []

    def h(self, level, text):
        self.blocks.append(("h", level, text))

    def p(self, text):
        self.blocks.append(("p", text))

    def table(self, header, rows):
        self.blocks.append(("table", header, rows))

    def md(self, text: str) -> None:
        """Markdown from a plugin (headings, pipe tables, paragraphs) as blocks, so HTML renders it too."""
        lines, para = text.strip().splitlines(), []
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            if line.startswith("|"):
                rows = []
                while i < len(lines) and lines[i].strip().startswith("|"):
                    cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                    if not all(set(c) <= set(":- ") for c in cells):
                        rows.append(cells)
                    i += 1
                if rows:
                    self.table(rows[0], rows[1:])
                continue
            if line.startswith("#"):
                level = len(line) - len(line.lstrip("#"))
                self.h(min(level + 2, 6), line.lstrip("#").strip())
            elif line:
                para.append(line)
            if para and (not line or i == len(lines) - 1):
                self.p(" ".join(para))
                para = []
            i += 1

    def img(self, rel, alt):
        self.blocks.append(("img", rel, alt))

    def banner(self, text):
        self.blocks.append(("banner", text))

    def video(self, rel, caption):
        self.blocks.append(("video", rel, caption))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "banner":
                out.append(f"> **{b[1]}**")
            elif b[0] == "table":
                out.append("| " + " | ".join(b[1]) + " |\n|" + "---|" * len(b[1]))
                out[-1] += "".join("\n| " + " | ".join(map(str, r)) + " |" for r in b[2])
            elif b[0] == "img":
                out.append(f"![{b[2]}]({b[1]})")
            elif b[0] == "video":
                out.append(f"[▶ {b[2]}]({b[1]})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        body = []
        for b in self.blocks:
            if b[0] == "h":
                body.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                body.append(f"<p>{e(b[1])}</p>")
            elif b[0] == "banner":
                body.append(f'<p class="banner"><strong>{e(b[1])}</strong></p>')
            elif b[0] == "table":
                head = "".join(f"<th>{e(str(c))}</th>" for c in b[1])
                rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif b[0] == "img":
                body.append(f'<figure><img src="{e(b[1])}" alt="{e(b[2])}"><figcaption>{e(b[2])}</figcaption></figure>')
            elif b[0] == "video":
                body.append(f'<figure><video src="{e(b[1])}" controls autoplay muted loop playsinline preload="auto" width="320"></video>'
                            f"<figcaption>{e(b[2])}</figcaption></figure>")
        return _HTML.format(title=e(title), body="\n".join(body))


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
th {{ background: #f3f3f3; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}
img {{ max-width: 480px; }}
.banner {{ background: #fff3cd; border: 2px solid #e0a800; padding: 0.6em 1em; }}
figcaption {{ font-size: 0.8em; color: #555; max-width: 480px; }}
</style></head>
<body>
{body}
</body></html>
"""


# ---------------------------------------------------------------- numbers

def pct(rate: dict) -> str:
    """'54% [44–63] (n=100)' from a stats rate dict."""
    if not rate or not rate.get("n"):
        return "n/a (n=0)"
    lo, hi = rate["ci"]
    return f"{100 * rate['rate']:.0f}% [{100 * lo:.0f}–{100 * hi:.0f}] (n={rate['n']})"


def wpct(w: dict) -> str:
    if not w or not w.get("n"):
        return "n/a"
    lo, hi = w["ci"]
    return f"{100 * w['score']:.0f}% [{100 * lo:.0f}–{100 * hi:.0f}]"


def pair_key(e: dict):
    return (tuple(e.get("offset") or ()), tuple(e.get("view") or ()), e.get("seed"), e.get("cell") and tuple(e["cell"]))


def by_policy(episodes) -> dict[str, list]:
    out = defaultdict(list)
    for e in episodes:
        out[e["policy"]].append(e)
    return out


# ---------------------------------------------------------------- the report

def write_report(run_dir: Path, ctx=None) -> Path:
    run_dir = Path(run_dir)
    spec = yaml.safe_load((run_dir / "spec.resolved.yaml").read_text())
    results = io.read_json(run_dir / "results.json", {"episodes": [], "summaries": {}})
    manifest = io.read_json(run_dir / "manifest.json", {})
    (run_dir / "plots").mkdir(exist_ok=True)
    doc = Doc()
    if spec.get("smoke") or manifest.get("smoke"):
        doc.banner(SMOKE_BANNER)
    title = (spec.get("report") or {}).get("title") or f"pxp report — {spec['name']}"
    doc.h(1, title)
    if spec.get("description"):
        doc.p(spec["description"])
    episodes = results.get("episodes", [])
    evals = defaultdict(list)
    for e in episodes:
        evals[e["evaluation"]].append(e)
    _summary(doc, spec, evals)
    if (spec.get("report") or {}).get("heatmaps", True):
        _heatmap_strips(run_dir, spec, str(getattr(ctx, "device", None) or "cpu"))
    for name, eps in evals.items():
        _evaluation_section(doc, run_dir, spec, name, eps, results.get("summaries", {}).get(name, {}), ctx)
    _probe_section(doc, run_dir, spec, ctx)
    _training_section(doc, run_dir, spec)
    _provenance(doc, run_dir, spec, manifest, len(episodes))
    io.write_text(run_dir / "report.md", doc.markdown())
    io.write_text(run_dir / "report.html", doc.html(title))
    return run_dir / "report.html"


def _heatmap_strips(run_dir: Path, spec: dict, device: str) -> None:
    """The strips render scenes and run policies: in a worker process, so that a crash there (a
    segfaulting renderer) costs the strips, never the report or the main process."""
    from pxp.core.pool import run_tasks

    for r in run_tasks(_strips_task, [(run_dir, spec, device)], workers=2, retries=0, timeout=1800):
        if not r.ok:  # the strips are extra: never lose the report over them
            print(f"warning: heatmap strips not written: {r.error}", file=sys.stderr)


def _strips_task(args) -> list[str]:
    from .heatmaps import write_strips

    return [str(p) for p in write_strips(*args)]


def family(spec: dict, policy: str) -> str:
    head = spec["policies"].get(policy, {}).get("head", {}).get("type", "")
    return FAMILY.get(head, head or "?")


def _summary(doc: Doc, spec: dict, evals: dict) -> None:
    rows = []
    for name, eps in evals.items():
        etype = spec["evaluations"][name]["type"]
        groups = by_policy(eps)
        para = [p for p in groups if family(spec, p) == "PARA"]
        act = [p for p in groups if family(spec, p) == "ACT"]
        if etype == "data_efficiency" or not para or not act:
            continue
        a, b = stats.summarize_outcomes(e.get("outcome") for e in groups[para[0]]), \
            stats.summarize_outcomes(e.get("outcome") for e in groups[act[0]])
        test = stats.paired_mcnemar({pair_key(e): e.get("outcome") for e in groups[para[0]]},
                                    {pair_key(e): e.get("outcome") for e in groups[act[0]]})
        delta = f"{100 * (a['place']['rate'] - b['place']['rate']):+.0f} pts" if a["n"] and b["n"] else "–"
        rows.append([name, AXIS.get(etype, etype), pct(a["place"]), pct(b["place"]), delta,
                     f"p={test['p_value']:.3g} ({test['pairs']} pairs)" if test["pairs"] else "unpaired",
                     f"{a['errors']} / {b['errors']}"])
    doc.h(2, "Summary")
    if rows:
        doc.p("Success = PLACE (bowl on plate). Brackets: 95% Wilson interval; n = episodes. "
              "Paired test: exact McNemar on episodes with the same position, viewpoint and seed.")
        doc.table(["Experiment", "OOD axis", "PARA", "ACT", "Delta", "Paired test", "Failed episodes (PARA / ACT)"], rows)
    else:
        doc.p("No evaluation compares a PARA with an ACT policy in this run.")
    failed = {name: sum(1 for e in eps if e.get("error")) for name, eps in evals.items()}
    if any(failed.values()):
        doc.p("Failed episodes (crashed, timed out or lost their worker; not counted in n; a rerun retries "
              "them): " + ", ".join(f"{name}: {k} of {len(evals[name])} ({_first_error(evals[name])})"
                                   for name, k in failed.items() if k) + ".")


def _first_error(eps: list) -> str:
    counts: dict[str, int] = {}
    for e in eps:
        if e.get("error"):
            why = str(e["error"]).split(" (")[0]
            counts[why] = counts.get(why, 0) + 1
    return "; ".join(f"{k}× {why}" for why, k in sorted(counts.items(), key=lambda kv: -kv[1])[:3])


def _policy_table(doc: Doc, spec: dict, groups: dict) -> None:
    rows = []
    for pol, eps in groups.items():
        s = stats.summarize_outcomes(e.get("outcome") for e in eps)
        c = s["counts"]
        rows.append([pol, family(spec, pol), s["n"], c["PLACE"], c["GRASP"], c["MISS"], s["errors"],
                     pct(s["place"]), wpct(s["weighted"])])
    doc.table(["Policy", "Head", "n", "PLACE", "GRASP", "MISS", "errors", "Success (95% CI)", "Weighted (95% CI)"], rows)


def _evaluation_section(doc: Doc, run_dir: Path, spec: dict, name: str, eps: list, summary: dict, ctx) -> None:
    cfg = spec["evaluations"][name]
    etype = cfg["type"]
    doc.h(2, f"{name} ({AXIS.get(etype, etype)})")
    groups = by_policy(eps)
    _policy_table(doc, spec, groups)
    extent = summary.get("extent")
    if any(e.get("offset") is not None for e in eps) and etype != "viewpoint_grid":
        train = summary.get("train_offsets") or []
        test = sorted({tuple(e["offset"]) for e in eps if e.get("offset") is not None})
        doc.img(_rel(run_dir, plots.position_map(train, test, run_dir / "plots" / f"{name}_positions.png",
                                                 extent=extent)), "train (green) and test (blue) positions")
        for pol, pe in groups.items():
            p = plots.outcome_grid(pe, run_dir / "plots" / f"{name}_{pol}_outcomes.png", title=f"{pol}: outcomes", extent=extent)
            doc.img(_rel(run_dir, p), f"{pol}: green = placed, yellow = grasped, red = missed (label: places/episodes)")
    if any(e.get("view") is not None for e in eps):
        _viewpoints(doc, run_dir, name, groups)
    if etype == "data_efficiency":
        _data_efficiency(doc, run_dir, spec, name, groups)
    section = _evaluator_section(ctx, cfg, summary)
    if section:
        doc.md(section)
    videos = [e for e in eps if e.get("video")]
    if videos:
        doc.h(3, "Videos")
        for e in videos:
            where = e.get("view") if e.get("view") is not None else e.get("offset")
            what = "view θ, φ" if e.get("view") is not None else "offset dx, dy"
            doc.video(e["video"], f"{e['policy']} — {e.get('outcome')} ({what} = "
                                  f"{', '.join(f'{v:g}' for v in np.round(where or [], 3))}; seed {e.get('seed')})")
    strips = sorted((run_dir / "plots").glob(f"{name}_*_heatmaps*.png"))
    for s in strips:
        doc.img(_rel(run_dir, s), s.stem.replace("_", " "))


def _viewpoints(doc: Doc, run_dir: Path, name: str, groups: dict) -> None:
    thetas = sorted({round(e["view"][0], 1) for eps in groups.values() for e in eps if e.get("view") is not None})
    rows, series = [], {}
    for pol, eps in groups.items():
        row, pts = [pol], []
        for th in thetas:
            s = stats.summarize_outcomes(e.get("outcome") for e in eps if e.get("view") and round(e["view"][0], 1) == th)
            row.append(f"{100 * s['place']['rate']:.0f}% (n={s['n']})" if s["n"] else "–")
            if s["n"]:
                pts.append((th, s["place"]["rate"], *s["place"]["ci"]))
        rows.append(row)
        series[pol] = pts
    doc.h(3, "Success per θ (averaged over φ)")
    doc.table(["Policy"] + [f"θ={t:g}°" for t in thetas], rows)
    doc.img(_rel(run_dir, plots.rate_curves(series, run_dir / "plots" / f"{name}_per_theta.png", "θ (degrees)",
                                            "success per θ, 95% intervals")), "success per θ")
    for pol, eps in groups.items():
        doc.img(_rel(run_dir, plots.viewpoint_polar(eps, run_dir / "plots" / f"{name}_{pol}_polar.png", f"{pol}")),
                f"{pol}: success per viewpoint (star: training view)")


def _data_efficiency(doc: Doc, run_dir: Path, spec: dict, name: str, groups: dict) -> None:
    rows, series, cells = [], defaultdict(list), {}
    inits = list(dict.fromkeys(_init_of(spec, kv) for kv in groups.items()))  # the evaluator's order
    for pol, eps in sorted(groups.items(), key=lambda kv: (inits.index(_init_of(spec, kv)), _demos(spec, kv[0]) or 0)):
        s = stats.summarize_outcomes(e.get("outcome") for e in eps)
        label = f"{family(spec, pol)} {_init_of(spec, (pol, eps))}"
        demos = _demos(spec, pol)
        rows.append([label, demos if demos is not None else "all", s["counts"]["PLACE"], s["counts"]["GRASP"], s["n"],
                     pct(s["place"]), wpct(s["weighted"])])
        cells[(demos if demos is not None else "all", label)] = s
        if demos is not None and s["n"]:
            series[label].append((demos, s["place"]["rate"], *s["place"]["ci"]))
    doc.h(3, "Success and weighted score by demo count")
    doc.table(["Policy", "Demos", "P", "G", "n", "Binary (95% CI)", "Weighted (95% CI)"], rows)
    _pivot(doc, cells, "Binary success (PLACE) by demo count × initialisation", lambda s: pct(s["place"]))
    _pivot(doc, cells, "Weighted score (PLACE = 1, GRASP = 0.5) by demo count × initialisation", lambda s: wpct(s["weighted"]))
    doc.img(_rel(run_dir, plots.rate_curves(dict(series), run_dir / "plots" / f"{name}_curves.png", "demos",
                                            "success vs demo count")), "success vs demo count")


def _pivot(doc: Doc, cells: dict, title: str, fmt) -> None:
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


def _evaluator_section(ctx, cfg: dict, summary: dict) -> str:
    from pxp.core.plugins import get_registry

    registry = ctx.registry if ctx is not None else get_registry()  # write_report(run_dir) alone has them too
    try:
        model = registry.get("evaluators", cfg["type"]).config_model.model_validate(cfg)
        evaluator = registry.create("evaluators", model)
    except Exception as exc:  # the report must still be written; say what is missing from it
        print(f"warning: report: no section from evaluator {cfg['type']!r}: {exc}", file=sys.stderr)
        return ""
    fn = getattr(evaluator, "report_section", None)
    return fn(summary) if fn else ""


def _probe_section(doc: Doc, run_dir: Path, spec: dict, ctx) -> None:
    """``pxp probe``'s results (run here if the run has trained policies and they are not up to date)."""
    from . import probe

    if (spec.get("report") or {}).get("probe", True):
        try:
            probe.ensure_probe(run_dir, device=str(getattr(ctx, "device", None) or "cpu"),
                               log=getattr(ctx, "log", None))
        except Exception as exc:  # the probe is extra: never lose the report over it
            print(f"warning: probe not run: {type(exc).__name__}: {exc}", file=sys.stderr)
    data = io.read_json(run_dir / "probe" / "probe.json")
    if not isinstance(data, dict) or not data.get("samples"):
        return
    doc.h(2, "Probe: does the grasp target follow the object?")
    st = data.get("settings", {})
    doc.p("No rollout: the scripted expert drives the arm to its pre-grasp pose above the bowl, the frame is "
          "rendered and each policy is asked for its targets. Grasp target = the first predicted target with the "
          "gripper commanded closed, else the lowest one. Error = its horizontal distance to the expert's grasp "
          "point (in brackets: to the nearest rim side; the expert switches side at y = 0). Objects swept along dx "
          f"and dy through the workspace centre ({st.get('points')} positions each), then the camera at the default "
          f"position over θ = {', '.join(f'{t:g}' for t in st.get('thetas', []))}° × φ = "
          f"{', '.join(f'{p:g}' for p in st.get('phis', []))}°. See docs/evaluation.md (Probe).")
    rows = [[r[0], family(spec, r[0]), *r[1:]] for r in probe.summary_rows(data)]
    doc.table(["Policy", "Head", "Axis", "n", "Median error in training range, cm", "Median outside, cm", "Max, cm"], rows)
    for axis, path in probe.plot_paths(run_dir).items():
        if path.exists():
            doc.img(_rel(run_dir, path), f"probe along {probe.AXIS_LABEL[axis]}: shaded = training range")
    t = data.get("timing") or {}
    per = ", ".join(f"{n} {s:.1f} s" for n, s in (t.get("policy_seconds") or {}).items())
    doc.p(f"Probe cost: {t.get('states')} states rendered in {t.get('frames_seconds')} s at "
          f"{t.get('image_size')} px (scene built in {t.get('scene_build_seconds')} s); queries: {per} ({t.get('device')}).")


def _training_section(doc: Doc, run_dir: Path, spec: dict) -> None:
    metrics = {p: io.read_jsonl(run_dir / "checkpoints" / p / "metrics.jsonl") for p in spec.get("policies", {})}
    metrics = {p: m for p, m in metrics.items() if m}
    doc.h(2, "Training")
    rows = []
    for pol, pcfg in spec.get("policies", {}).items():
        marker = io.read_json(run_dir / ".stages" / f"training.{pol}.json", {}) or {}
        res = marker.get("result", {})
        bb = pcfg["backbone"]
        rows.append([pol, family(spec, pol), _backbone_text(bb),
                     _weights_text(res, bb), pcfg["objective"]["type"], pcfg["dataset"],
                     res.get("train_demos", pcfg.get("demos") or "all"), pcfg.get("init_from") or "scratch",
                     res.get("steps", "?"), f"{res.get('seconds', 0) / 60:.1f} min"])
    doc.table(["Policy", "Head", "Backbone", "Backbone weights", "Objective", "Dataset", "Demos trained on", "Init", "Steps",
               "Time"], rows)
    if metrics:
        doc.img(_rel(run_dir, plots.training_curves(metrics, run_dir / "plots" / "training_curves.png")), "training loss")


def _backbone_text(bb: dict) -> str:
    """``dinov2:vit_small_patch14_dinov2``; a backbone without a model name shows its size instead."""
    name = bb.get("model") or bb.get("name")
    if name:
        return f"{bb['type']}:{name}"
    size = [f"{k} {bb[k]}" for k in ("patch_size", "embed_dim", "depth", "image_size") if k in bb]
    return f"{bb['type']} ({', '.join(size)})" if size else bb["type"]


def _weights_text(result: dict, backbone: dict) -> str:
    info = result.get("weights") or result.get("weights_info") or result.get("backbone_weights")
    if isinstance(info, dict):
        src = info.get("source", "?")
        return src if src == "random init" else f"{src} (sha256 {str(info.get('sha256', '?'))[:12]})"
    return "random init" if not backbone.get("weights") else str(backbone["weights"])


def _provenance(doc: Doc, run_dir: Path, spec: dict, manifest: dict, n_episodes: int) -> None:
    doc.h(2, "Provenance")
    libs = ", ".join(f"{k} {v}" for k, v in (manifest.get("libraries") or {}).items() if v)
    commit = (manifest.get("git_commit") or {}).get("pxp") or "not a git checkout"
    doc.table(["", ""], [
        ["pxp", manifest.get("pxp", "?")], ["commit", commit], ["device", manifest.get("device", "?")],
        ["seed", spec.get("seed")], ["episodes evaluated", n_episodes], ["libraries", libs],
        ["plugins", ", ".join(f"{p['name']} ({p['distribution']} {p['version']})" for p in manifest.get("plugins", []))],
        ["created", manifest.get("created", "?")],
    ])


def _rel(run_dir: Path, path: Path) -> str:
    return str(Path(path).relative_to(run_dir))
