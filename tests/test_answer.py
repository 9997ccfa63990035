"""`pxp answer` regenerates the answer table from the committed fixture (tests/fixtures/answer, outcomes set by
hand in make_fixture.py) and every number it prints is checked: rates and differences against the fixture's
letters counted by hand, the difference's interval against the crossed ANOVA worked by hand, and the other
intervals against the statistics functions on records typed out here."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy import stats as st

from pxp.core.cli import cli
from pxp.core.plugins import get_registry
from pxp.experiment import stats
from pxp.plugins.reports.para_vs_act import answer, answer_command

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "answer"
P, M, G = 1.0, 0.0, 0.5


def records(a: list[str], b: list[str], clusters: list[str], weights=None) -> list[tuple]:
    """(replicate, cluster, a, b) from per-replicate letter strings, as the fixture writes them."""
    w = weights or {"P": 1.0, "G": 0.0, "M": 0.0}
    return [(r, c, w[x], w[y]) for r, (ra, rb) in enumerate(zip(a, b)) for x, y, c in zip(ra, rb, clusters)]


@pytest.fixture(scope="module")
def built():
    reg = get_registry()
    return answer.build_answer([answer.read_run(FIXTURE / "study", reg), answer.read_run(FIXTURE / "pretraining", reg)])


def test_left_to_right_row_by_hand(built):
    row = built["axes"][0]
    assert row["evaluation"] == "left_to_right" and row["seed"] == (0.54, 0.01)
    cmp = row["cmp"]
    assert (cmp.a["rate"], cmp.b["rate"], cmp.a["n"]) == (8 / 12, 2 / 12, 12)  # PPPMMM + PPPPPM; MMPMMM + PMMMMM
    # cell differences (replicate × position): [[1, 0, 0], [.5, 1, .5]]; MS_rep = 1/6, MS_pos = 1/8
    var = (1 / 6 + 1 / 8) / 6
    df = var ** 2 / ((1 / 36) ** 2 / 1 + (1 / 48) ** 2 / 2)
    half = st.t.ppf(0.975, df) * math.sqrt(var)
    assert cmp.diff["estimate"] == pytest.approx(0.5) and cmp.diff["df"] == pytest.approx(df)
    assert cmp.diff["ci"] == pytest.approx([0.5 - half, 1.0])  # the upper end clipped at +1
    assert row["verdict"] == "same direction, not significant"
    clusters = ["p0", "p0", "p1", "p1", "p2", "p2"]
    recs = records(["PPPMMM", "PPPPPM"], ["MMPMMM", "PMMMMM"], clusters)
    assert cmp.a["ci"] == pytest.approx(stats.clustered_rate((r, c, a) for r, c, a, _ in recs)["ci"])
    assert cmp.b["ci"] == pytest.approx(stats.clustered_rate((r, c, b) for r, c, _, b in recs)["ci"])


def test_every_other_number(built):
    view = built["axes"][1]["cmp"]
    assert built["axes"][1]["evaluation"] == "viewpoints" and len(built["axes"]) == 2  # near → far, distractors absent
    recs = records(["PPPM", "PPMM"], ["PPMM", "PMMM"], ["v00", "v01", "v10", "v11"])
    assert (view.a["rate"], view.b["rate"]) == (5 / 8, 3 / 8)
    assert view.diff["ci"] == pytest.approx(stats.pooled_difference(recs)["ci"])
    control = built["controls"][0]["cmp"]
    assert built["controls"][0]["evaluation"] == "default_control" and (control.a["rate"], control.b["rate"]) == (0.75, 1.0)
    assert [r["theta"] for r in built["theta"]] == [0.0, 5.0]
    assert [(r["cmp"].a["rate"], r["cmp"].b["rate"]) for r in built["theta"]] == [(1.0, 0.75), (0.25, 0.0)]
    low, moderate = built["regimes"]
    weights = {"P": P, "G": G, "M": M}
    assert (low["cmp"].a["rate"], low["cmp"].b["rate"]) == ((G + P + G + G) / 4, (M + M + M + G) / 4)
    assert (moderate["cmp"].a["rate"], moderate["cmp"].b["rate"]) == ((P + P + P + G) / 4, (G + M + G + G) / 4)
    assert low["cmp"].diff["ci"] == pytest.approx(
        stats.pooled_difference(records(["GP", "GG"], ["MM", "MG"], ["p0", "p1"], weights))["ci"])
    assert [low["verdict"], moderate["verdict"]] == ["same direction, not significant"] * 2


@pytest.mark.parametrize("estimate, ci, expected", [
    (0.3, (0.1, 0.5), "reproduced"), (0.3, (-0.1, 0.5), "same direction, not significant"),
    (-0.1, (-0.3, 0.1), "not reproduced"), (-0.3, (-0.5, -0.1), "reversed"), (0.0, (-0.2, 0.2), "not reproduced")])
def test_verdict_rule(estimate, ci, expected):
    assert answer.verdict(0.53, estimate, ci) == expected


def test_command_writes_the_page_and_the_readme_section(tmp_path):
    cli.add_command(answer_command)  # as `pxp` does through the plugin's pxp_register_commands
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{answer.BEGIN}\nold table\n{answer.END}\nrest\n")
    out = tmp_path / "answer.md"
    res = CliRunner().invoke(cli, ["answer", str(FIXTURE / "study"), str(FIXTURE / "pretraining"), "--out", str(out),
                                   "--readme", str(readme), "--registration", "abc1234"])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert ("| Left → right (object position) | 54% / 1% | 67% [10–97] (n=12, 3 clusters × 2 replicates) | "
            "17% [5–45] (n=12, 3 clusters × 2 replicates) | +50 pts [-31, +100] (12 pairs) | "
            "same direction, not significant |") in page
    assert "Registration: commit `abc1234`" in page and "wall time 90 min" in page and "`0123456789ab`" in page
    assert "| 5° | 25% [0–96] (n=4, 2 clusters × 2 replicates) | 0% [0–49] (n=4, 2 clusters × 2 replicates) |" in page
    text = readme.read_text()
    assert text.startswith("intro\n" + answer.BEGIN) and text.endswith(answer.END + "\nrest\n")
    assert "old table" not in text and "| Left → right (object position) | 54% / 1% | 67% [10–97]" in text
    assert "pxp answer" in text
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    res = CliRunner().invoke(cli, ["answer", str(FIXTURE / "study"), "--out", str(out), "--readme", str(bare)])
    assert res.exit_code == 1 and "no <!-- answer:begin -->" in res.output


def test_the_report_pools_each_evaluation_over_its_replicates(tmp_path):
    import shutil

    from pxp.experiment.report import Doc, Report
    from pxp.plugins.reports.para_vs_act import ParaVsActSummary

    shutil.copytree(FIXTURE / "study", tmp_path / "study")
    doc = Doc()
    ParaVsActSummary.render_pooled(Report(tmp_path / "study"), doc)
    text = doc.markdown()
    assert "### Pooled over replicates" in text
    assert ("| left_to_right | 2 | 67% [10–97] (n=12, 3 clusters × 2 replicates) | "
            "17% [5–45] (n=12, 3 clusters × 2 replicates) | +50 pts [-31, +100] (12 pairs) |") in text
