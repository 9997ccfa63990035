"""report.md + report.html for a run directory, assembled from sections.

The report is rebuilt from files alone (results.json, manifest.json, spec.resolved.yaml, stage markers,
metrics.jsonl), so ``pxp eval`` or a re-run can regenerate it. Every rate carries its 95% interval and n.

Sections come from here (one per evaluation, training, provenance) and from plugins through the
``pxp_report_sections(report)`` hook (a comparison summary, a probe, …): each is an object with
``title``, ``order`` and ``render(report, doc)`` (:class:`pxp.core.contracts.ReportSection`), rendered
in ``order``. Evaluators add to their own section (``report_figures`` and ``report_section``), and each
head draws its own prediction figure (see :mod:`pxp.experiment.heatmaps`).
"""
from __future__ import annotations

import html
import sys
import threading
from collections import defaultdict
from pathlib import Path

import numpy as np

from pxp.core import io
from pxp.core.contracts import ReportSection, section_problem
from pxp.core.rundir import RunDir
from . import plots, stats
from .policy import METRICS
from .stats import pct, wpct  # noqa: F401  (the one rate format; re-exported for sections)

SMOKE_BANNER = ("SMOKE RUN (pxp run --smoke): every size shrunk (64 px images, tiny random-init backbones, a few "
                "cells, steps and episodes). It shows that every stage runs; its numbers mean nothing.")



def drift_banner(drift: dict) -> str:
    """The loud line of a failed drift preflight: this machine does not reproduce the references."""
    from pxp.core.doctor import BANNER, summary

    return (f"{BANNER.upper()}: this machine does not reproduce the scene's golden references, so its results may "
            f"not be comparable with results measured elsewhere. {summary(drift)}. Run `pxp doctor` for details.")


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


# ---------------------------------------------------------------- what a section sees

class Report:
    """A run directory's files, read once, and the helpers report sections share."""

    def __init__(self, run_dir: Path, registry=None, device: str = "cpu", log=None):
        from pxp.core.plugins import get_registry

        self.run_dir = Path(run_dir)
        self.registry = registry if registry is not None else get_registry()
        self.device, self.log = device, log
        self.paths = RunDir(run_dir)
        self.spec = self.paths.spec_data()  # plain data: sections read it, and the figures' worker process gets it
        self.results = io.read_json(self.paths.results, {"episodes": [], "summaries": {}})
        self.manifest = io.read_json(self.paths.manifest, {})
        self.episodes = self.results.get("episodes", [])
        self.evaluations: dict[str, list] = defaultdict(list)
        for e in self.episodes:
            self.evaluations[e["evaluation"]].append(e)
        self.plots = self.paths.plots
        self.plots.mkdir(exist_ok=True)

    @property
    def settings(self) -> dict:
        return self.spec.get("report") or {}

    def section_on(self, name: str) -> bool:
        """Whether the spec's ``report.sections`` leaves the section ``name`` on (the default)."""
        return bool((self.settings.get("sections") or {}).get(name, True))

    @property
    def outcomes(self):
        """The scene's :class:`pxp.core.contracts.Outcomes` (how episodes end, their weights and colours)."""
        scene = (self.spec.get("scene") or {}).get("type")
        comp = self.registry.components["scenes"].get(scene)
        if comp is None:
            raise ValueError(f"report: scene {scene!r} is not installed")
        return comp.config_model.outcomes

    def score(self, episodes) -> dict:
        """Counts, rates and intervals of these episodes (:func:`pxp.experiment.stats.summarize_outcomes`)."""
        return stats.summarize_outcomes((e.get("outcome") for e in episodes), self.outcomes)

    def summary(self, evaluation: str) -> dict:
        return self.results.get("summaries", {}).get(evaluation, {})

    def label(self, policy: str) -> str:
        """How reports name a policy's head: the head config's ``label`` (e.g. a family name), else its type."""
        head = self.spec["policies"].get(policy, {}).get("head", {}).get("type", "")
        comp = self.registry.components["heads"].get(head)
        label = comp.config_model.label if comp else None
        return label or head or "?"

    def axis(self, evaluation: str) -> str:
        """What an evaluation varies, for headings: its config model's ``axis``, else its type."""
        etype = self.evaluation_config(evaluation).get("type")
        comp = self.registry.components["evaluators"].get(etype)
        axis = comp.config_model.axis if comp else None
        return axis or etype

    def evaluation_config(self, evaluation: str) -> dict:
        """The evaluation's config: the run's spec's, else (run into this directory by another spec) the one
        results.json collected from its ``evals/<name>/result.json``, else its evaluator type alone."""
        if evaluation in self.spec.get("evaluations", {}):
            return self.spec["evaluations"][evaluation]
        return (self.results.get("configs") or {}).get(evaluation) or {"type": self.summary(evaluation).get("evaluator")}

    def evaluator(self, evaluation: str):
        """The evaluation's evaluator, built from the resolved spec (None, with a warning, if it cannot be)."""
        cfg = self.evaluation_config(evaluation)
        try:
            config_model = self.registry.get("evaluators", cfg["type"]).config_model
            try:
                model = config_model.model_validate(cfg)
            except ValueError:  # an edited or partial resolved spec: the report needs no valid config
                model = config_model.model_construct(**cfg)
            return self.registry.create("evaluators", model)
        except Exception as exc:  # the report must still be written; say what is missing from it
            print(f"warning: report: no section from evaluator {cfg['type']!r}: {exc}", file=sys.stderr)
            return None

    def rel(self, path) -> str:
        return str(Path(path).relative_to(self.run_dir))


# ---------------------------------------------------------------- the report

def write_report(run_dir: Path, ctx=None) -> Path:
    report = Report(run_dir, getattr(ctx, "registry", None), str(getattr(ctx, "device", None) or "cpu"),
                    getattr(ctx, "log", None))
    doc = Doc()
    if report.spec.get("smoke") or report.manifest.get("smoke"):
        doc.banner(SMOKE_BANNER)
    drift = report.manifest.get("drift") or {}
    if drift and not drift.get("ok", True):
        doc.banner(drift_banner(drift))
    title = report.settings.get("title") or f"pxp report — {report.spec['name']}"
    doc.h(1, title)
    if report.spec.get("description"):
        doc.p(report.spec["description"])
    ordered = sorted(sections(report), key=lambda s: s.order)
    # The figures' worker process and the sections' slow work (the probe) run side by side: two cores.
    figures = threading.Thread(target=_prediction_figures, args=(report,), daemon=True)
    if report.section_on("prediction_strips"):
        figures.start()
    for section in ordered:
        _guarded(section, "prepare", report)
    if figures.is_alive():  # a Ctrl-C above does not wait for it: a daemon thread, its worker dies with us
        figures.join()
    for section in ordered:
        _guarded(section, "render", report, doc)
    io.write_text(report.paths.report_md, doc.markdown())
    io.write_text(report.paths.report_html, doc.html(title))
    return report.paths.report_html


def _guarded(section: ReportSection, method: str, *args) -> None:
    """Call a section's ``prepare`` or ``render``: one section must not cost the others."""
    try:
        (section.prepare if method == "prepare" else section.render)(*args)
    except Exception as exc:
        what = "not written" if method == "render" else f"{method} failed"
        print(f"warning: report section {section.title!r} {what}: {type(exc).__name__}: {exc}", file=sys.stderr)


def sections(report: Report) -> list:
    """This module's sections plus every plugin's (``pxp_report_sections``)."""
    out = [FailedEpisodes(), EvaluationSections(), TrainingSection(), ProvenanceSection()]
    manager = getattr(report.registry, "manager", None)
    if manager is not None:
        for impl in manager.hook.pxp_report_sections.get_hookimpls():
            try:
                given = list(impl.function(report=report) or [])
            except Exception as exc:
                print(f"warning: report: plugin {impl.plugin_name!r} gave no sections: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
                continue
            for section in given:
                problem = section_problem(section)
                if problem:  # refused, named; the other sections are still written
                    print(f"warning: report: a section of plugin {impl.plugin_name!r} is left out: {problem}",
                          file=sys.stderr)
                else:
                    out.append(section)
    return out


def _prediction_figures(report: Report) -> None:
    """The figures render scenes and run policies: in a worker process, so that a crash there (a
    segfaulting renderer) costs the figures, never the report or the main process."""
    from pxp.core.execution import run_tasks

    task = (report.run_dir, report.spec, report.device, report.registry.recipe)
    for r in run_tasks(_figures_task, [task], workers=2, retries=0, timeout=1800):
        if not r.ok:  # the figures are extra: never lose the report over them
            print(f"warning: heatmap strips not written: {r.error}", file=sys.stderr)


def _figures_task(args) -> list[str]:
    from pxp.core.plugins import registry_from_recipe

    from .heatmaps import write_strips

    run_dir, spec, device, recipe = args
    return [str(p) for p in write_strips(run_dir, spec, device, registry=registry_from_recipe(recipe))]


class FailedEpisodes(ReportSection):
    """One paragraph counting the episodes that crashed, timed out or lost their worker, if any (right
    after a plugin's summary, order 10)."""

    title, order = "Failed episodes", 11

    def render(self, report: Report, doc: Doc) -> None:
        failed_episodes(doc, report.evaluations)


def failed_episodes(doc: Doc, evals: dict) -> None:
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


def by_policy(episodes) -> dict[str, list]:
    out = defaultdict(list)
    for e in episodes:
        out[e["policy"]].append(e)
    return out


# ---------------------------------------------------------------- one section per evaluation

class EvaluationSections(ReportSection):
    title, order = "Evaluations", 20

    def render(self, report: Report, doc: Doc) -> None:
        for name, eps in report.evaluations.items():
            evaluation_section(report, doc, name, eps)


def evaluation_section(report: Report, doc: Doc, name: str, eps: list) -> None:
    doc.h(2, f"{name} ({report.axis(name)})")
    groups = by_policy(eps)
    policy_table(report, doc, groups)
    summary = report.summary(name)
    evaluator = report.evaluator(name)
    figures = evaluator.report_figures if evaluator is not None else None
    (figures or position_figures)(report, doc, name, eps, summary)
    section = evaluator.report_section(summary) if evaluator is not None else ""
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
    for s in sorted(report.plots.glob(f"{name}_*_heatmaps*.png")):
        doc.img(report.rel(s), s.stem.replace("_", " "))


def policy_table(report: Report, doc: Doc, groups: dict) -> None:
    rows, names, success = [], list(report.outcomes.names), report.outcomes.success_rate
    for pol, eps in groups.items():
        s = report.score(eps)
        rows.append([pol, report.label(pol), s["n"], *(s["counts"][o] for o in names), s["errors"],
                     pct(s[success]), wpct(s["weighted"])])
    doc.table(["Policy", "Head", "n", *names, "errors", "Success (95% CI)", "Weighted (95% CI)"], rows)


def position_figures(report: Report, doc: Doc, name: str, eps: list, summary: dict) -> None:
    """Train and test positions, and each policy's outcome per position (episodes with an offset)."""
    if not any(e.get("offset") is not None for e in eps):
        return
    extent = summary.get("extent")
    train = summary.get("train_offsets") or []
    test = sorted({tuple(e["offset"]) for e in eps if e.get("offset") is not None})
    doc.img(report.rel(plots.position_map(train, test, report.plots / f"{name}_positions.png", extent=extent)),
            "train (green) and test (blue) positions")
    for pol, pe in by_policy(eps).items():
        p = plots.outcome_grid(pe, report.plots / f"{name}_{pol}_outcomes.png", report.outcomes, title=f"{pol}: outcomes",
                               extent=extent)
        doc.img(report.rel(p), f"{pol}: {report.outcomes.legend}")


# ---------------------------------------------------------------- training and provenance

class TrainingSection(ReportSection):
    title, order = "Training", 40

    def render(self, report: Report, doc: Doc) -> None:
        paths, spec = report.paths, report.spec
        metrics = {p: io.read_jsonl(paths.checkpoint(p) / METRICS) for p in spec.get("policies", {})}
        metrics = {p: m for p, m in metrics.items() if m}
        doc.h(2, "Training")
        rows = []
        for pol, pcfg in spec.get("policies", {}).items():
            marker = io.read_json(paths.marker("training", pol), {}) or {}
            res = marker.get("result", {})
            bb = pcfg["backbone"]
            rows.append([pol, report.label(pol), _backbone_text(bb),
                         _weights_text(res, bb), pcfg["objective"]["type"], pcfg["dataset"],
                         res.get("train_demos", pcfg.get("demos") or "all"), pcfg.get("init_from") or "scratch",
                         res.get("steps", "?"), f"{res.get('seconds', 0) / 60:.1f} min"])
        doc.table(["Policy", "Head", "Backbone", "Backbone weights", "Objective", "Dataset", "Demos trained on", "Init",
                   "Steps", "Time"], rows)
        if metrics:
            doc.img(report.rel(plots.training_curves(metrics, report.plots / "training_curves.png")), "training loss")


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
        if src == "random init":
            return src
        origin = f"; {info['origin']}, from {info.get('converted_from')} sha256 {info.get('source_sha256')}" \
            if info.get("origin") else ""
        return f"{src} (sha256 {str(info.get('sha256', '?'))[:12]}{origin})"
    return "random init" if not backbone.get("weights") else str(backbone["weights"])


def _all_weights(manifest: dict, spec: dict) -> str:
    """Every distinct backbone weights line of the run's policies (source, sha256, origin when imported)."""
    units = (manifest.get("units") or {}).get("training") or {}
    texts = {_weights_text((units.get(p) or {}).get("result") or {}, pcfg.get("backbone") or {})
             for p, pcfg in (spec.get("policies") or {}).items()}
    return "; ".join(sorted(texts)) or "?"


def _drift_text(drift: dict | None) -> str:
    if not drift:
        return "not run"
    names = ", ".join(c["name"] for c in drift.get("checks", []))
    verdict = "passed" if drift.get("ok") else "FAILED"
    return f"{verdict} ({names}; quick, {drift.get('checked', '?')} on {drift.get('host', '?')})"


class ProvenanceSection(ReportSection):
    title, order = "Provenance", 90

    def render(self, report: Report, doc: Doc) -> None:
        manifest, spec = report.manifest, report.spec
        doc.h(2, "Provenance")
        libs = ", ".join(f"{k} {v}" for k, v in (manifest.get("libraries") or {}).items() if v)
        commit = (manifest.get("git_commit") or {}).get("pxp") or "not a git checkout"
        doc.table(["", ""], [
            ["pxp", manifest.get("pxp", "?")], ["commit", commit], ["device", manifest.get("device", "?")],
            ["cpu", manifest.get("cpu", "?")], ["seed", spec.get("seed")], ["episodes evaluated", len(report.episodes)], ["libraries", libs],
            ["plugins", ", ".join(f"{p['name']} ({p['distribution']} {p['version']})" for p in manifest.get("plugins", []))],
            ["backbone weights", _all_weights(manifest, spec)], ["drift check", _drift_text(manifest.get("drift"))],
            ["created", manifest.get("created", "?")],
        ])
