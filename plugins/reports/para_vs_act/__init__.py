"""The seed's PARA-vs-ACT summary table, as a report section.

One row per evaluation that has both a PARA and an ACT policy, with each one's success, the difference
and an exact McNemar test on paired episodes.

A report plugin (``pxp_report_sections``): it writes its section only when the run has a policy with
either head, so a run of other heads gets no word of PARA or ACT.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import click

from pxp.core.contracts import ReportSection
from pxp.core.hookspecs import hookimpl
from pxp.core.results import episode_pair_key
from pxp.experiment import stats
from pxp.experiment.report import by_policy
from pxp.experiment.stats import pct

HEADS = ("PARA", "ACT")


class ParaVsActSummary(ReportSection):
    title, order = "Summary", 10

    def render(self, report, doc) -> None:
        if not any(report.label(p) in HEADS for p in report.spec.get("policies") or {}):
            return
        rows = [row for name, eps in report.evaluations.items() if (row := self.row(report, name, eps))]
        doc.h(2, "Summary")
        if rows:
            doc.p("Success = PLACE (bowl on plate). Brackets: 95% Wilson interval; n = episodes. "
                  "Delta: PARA − ACT on paired episodes (the same position, viewpoint and seed) with its 95% interval "
                  "(Newcombe's method for paired rates); paired test: exact McNemar on those pairs.")
            doc.table(["Experiment", "OOD axis", "PARA", "ACT", "Delta", "Paired test", "Failed episodes (PARA / ACT)"],
                      rows)
        else:
            doc.p("No evaluation compares a PARA with an ACT policy in this run.")
        self.render_pooled(report, doc)

    @staticmethod
    def render_pooled(report, doc) -> None:
        """With replicates: each evaluation pooled over them, with the intervals of docs/evaluation.md."""
        from .answer import compare, diff_text, rate_text, success_value

        bases = {}
        for name, s in report.results.get("summaries", {}).items():
            bases.setdefault(s.get("replicate_of", name), []).append(name)
        rows = []
        for base, names in bases.items():
            if len(names) < 2:
                continue
            eps = [e for n in names for e in report.evaluations.get(n, [])]
            heads = {h: [e for e in eps if report.label(e["policy"]) == h] for h in HEADS}
            if all(heads.values()):
                cmp = compare(heads["PARA"], heads["ACT"], success_value(report.outcomes))
                rows.append([base, str(len(names)), rate_text(cmp.a), rate_text(cmp.b), diff_text(cmp.diff)])
        if rows:
            doc.h(3, "Pooled over replicates")
            doc.p("Each evaluation's replicates (training seeds) together: rates with intervals that account for "
                  "clustering by position and replicate, PARA − ACT on paired episodes with the crossed "
                  "replicates × positions interval (docs/evaluation.md).")
            doc.table(["Evaluation", "Replicates", "PARA", "ACT", "PARA − ACT"], rows)

    @staticmethod
    def row(report, name: str, eps: list) -> list | None:
        groups = by_policy(eps)
        para = [p for p in groups if report.label(p) == "PARA"]
        act = [p for p in groups if report.label(p) == "ACT"]
        if report.evaluation_config(name).get("type") == "data_efficiency" or not para or not act:
            return None  # data efficiency compares demo counts, not one PARA with one ACT
        a, b = report.score(groups[para[0]]), report.score(groups[act[0]])
        test = stats.paired_mcnemar({episode_pair_key(e): e.get("outcome") for e in groups[para[0]]},
                                    {episode_pair_key(e): e.get("outcome") for e in groups[act[0]]}, report.outcomes)
        delta = f"{100 * (a['place']['rate'] - b['place']['rate']):+.0f} pts" if a["n"] and b["n"] else "–"
        if test["pairs"]:
            delta += " [{:+.0f}, {:+.0f}]".format(*(100 * x for x in test["diff_ci"]))
        return [name, report.axis(name), pct(a["place"]), pct(b["place"]), delta,
                f"p={test['p_value']:.3g} ({test['pairs']} pairs)" if test["pairs"] else "unpaired",
                f"{a['errors']} / {b['errors']}"]


@hookimpl
def pxp_report_sections(report):
    return [ParaVsActSummary()]


@click.command("answer")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/answer.md"), show_default=True,
              help="The answer page to write.")
@click.option("--readme", type=click.Path(dir_okay=False, path_type=Path),
              help="Also rewrite this README's results section (between <!-- answer:begin --> and <!-- answer:end -->).")
@click.option("--registration", metavar="COMMIT",
              help="The registration commit to cite (default: the last commit of docs/registration.md).")
def answer_command(runs, out, readme, registration):
    """The seed's claims against pxp's runs: one table per claim, from the runs' results.json."""
    from pxp.core import io
    from pxp.core.plugins import get_registry

    from .answer import build_answer, read_run, readme_section, render, replace_between_markers

    registry = get_registry()
    answer = build_answer([read_run(r, registry) for r in runs])
    registration = registration or _last_commit("docs/registration.md")
    command = "pxp answer " + " ".join(str(r) for r in runs) + f" --out {out}" + (f" --readme {readme}" if readme else "")
    io.write_text(out, render(answer, registration, command))
    if readme:
        io.write_text(readme, replace_between_markers(readme.read_text(), readme_section(answer, registration)))
    click.echo(f"answer: {out}" + (f"\nREADME section: {readme}" if readme else ""))


def _last_commit(path: str) -> str | None:
    try:
        res = subprocess.run(["git", "log", "-1", "--format=%h", "--", path], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None


@hookimpl
def pxp_register_commands(cli):
    cli.add_command(answer_command)
