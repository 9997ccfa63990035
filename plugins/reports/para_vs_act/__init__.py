"""The seed's PARA-vs-ACT summary table, as a report section.

One row per evaluation that has both a PARA and an ACT policy, with each one's success, the difference
and an exact McNemar test on paired episodes.

A report plugin (``pxp_report_sections``): it writes its section only when the run has a policy with
either head, so a run of other heads gets no word of PARA or ACT.
"""
from __future__ import annotations

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
                  "Paired test: exact McNemar on episodes with the same position, viewpoint and seed.")
            doc.table(["Experiment", "OOD axis", "PARA", "ACT", "Delta", "Paired test", "Failed episodes (PARA / ACT)"],
                      rows)
        else:
            doc.p("No evaluation compares a PARA with an ACT policy in this run.")

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
        return [name, report.axis(name), pct(a["place"]), pct(b["place"]), delta,
                f"p={test['p_value']:.3g} ({test['pairs']} pairs)" if test["pairs"] else "unpaired",
                f"{a['errors']} / {b['errors']}"]


@hookimpl
def pxp_report_sections(report):
    return [ParaVsActSummary()]
