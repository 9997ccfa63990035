"""The report writer on a synthetic run directory: tables with intervals, plots and HTML assets."""
import re
from pathlib import Path

import numpy as np
import yaml

from pxp.core import io
from pxp.experiment.report import pct, write_report
from pxp.experiment.stats import summarize_outcomes
from pxp.plugins.scenes.libero.outcomes import OUTCOMES
from pxp.experiment.video import write_video


def policy(head, **kw):
    return {"backbone": {"type": "tiny_vit"}, "head": {"type": head}, "objective": {"type": "behavior_cloning"},
            "dataset": "d", "train": {"steps": 10}, **kw}


def make_run(tmp_path: Path) -> Path:
    spec = {"name": "synthetic", "seed": 0, "scene": {"type": "libero_bowl_plate"},
            "policies": {"para": policy("para_volume"), "act": policy("act_regression")},
            "evaluations": {"lr": {"type": "position_split"}, "views": {"type": "viewpoint_grid"}}}
    (tmp_path / "spec.resolved.yaml").write_text(yaml.safe_dump(spec))
    eps = []
    for i in range(20):  # PARA places 15/20, ACT 2/20, on the same (offset, seed) pairs
        off = [round(-0.1 + 0.01 * (i % 5), 3), round(0.05 * (i // 5), 3)]
        for pol, k in (("para", 15), ("act", 2)):
            eps.append({"evaluation": "lr", "evaluator": "position_split", "policy": pol, "offset": off, "seed": i,
                        "outcome": "PLACE" if i < k else ("GRASP" if i % 2 else "MISS"), "error": None})
    for th in (0.0, 12.5, 25.0):
        for ph in (0.0, 90.0):
            for pol in ("para", "act"):
                eps.append({"evaluation": "views", "evaluator": "viewpoint_grid", "policy": pol, "view": [th, ph],
                            "seed": 0, "outcome": "PLACE" if th < 20 or pol == "para" else "MISS", "error": None})
    write_video(tmp_path / "videos" / "lr_para_0.mp4", np.zeros((4, 32, 32, 3), np.uint8), stages="PLACE")
    eps[0]["video"] = "videos/lr_para_0.mp4"
    io.write_json(tmp_path / "results.json", {"episodes": eps, "summaries": {}})
    io.write_json(tmp_path / "manifest.json", {"pxp": "0.1.0", "device": "cpu", "libraries": {"torch": "2.15.0"}})
    io.write_json(tmp_path / ".stages" / "training.para.json",
                  {"hash": "x", "status": "done", "result": {"steps": 10, "weights": {"source": "random init"}}})
    return tmp_path


def referenced_assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"#:]+)"', html)


def test_report_has_summary_with_intervals_and_assets(tmp_path):
    run = make_run(tmp_path)
    write_report(run)
    md = (run / "report.md").read_text()
    para = summarize_outcomes(["PLACE"] * 15 + ["MISS"] * 5, OUTCOMES)["place"]
    assert pct(para) == "75% [53–89] (n=20)"  # Wilson 95% for 15/20: [0.531, 0.888]
    row = next(l for l in md.splitlines() if l.startswith("| lr |"))
    assert "75% [53–89] (n=20)" in row and "10% [3–30] (n=20)" in row and "+65 pts" in row and "p=" in row
    assert "θ=12.5°" in md and "random init" in md
    html = (run / "report.html").read_text()
    assets = referenced_assets(html)
    assert any(a.endswith(".mp4") for a in assets) and sum(a.endswith(".png") for a in assets) >= 6
    for a in assets:
        assert (run / a).is_file(), f"report.html references a missing file: {a}"


def test_every_prepare_runs_beside_the_figures_and_before_any_render(tmp_path, monkeypatch, capsys):
    import threading

    from pxp.experiment import report as report_mod

    calls, figures_running = [], threading.Event()

    def figures(report):
        figures_running.set()
        calls.append("figures")

    class Section:
        def __init__(self, name, order, fail=False):
            self.title, self.order, self.fail = name, order, fail

        def prepare(self, report):
            assert figures_running.wait(10)  # the figures' thread started before the slow work
            calls.append(f"prepare {self.title}")
            if self.fail:
                raise RuntimeError("no probe today")

        def render(self, report, doc):
            calls.append(f"render {self.title}")
            doc.p(f"section {self.title}")

    class RenderOnly:
        title, order = "plain", 3

        def render(self, report, doc):
            calls.append("render plain")

    run = make_run(tmp_path)
    monkeypatch.setattr(report_mod, "_prediction_figures", figures)
    monkeypatch.setattr(report_mod, "sections", lambda report: [Section("b", 2), Section("a", 1, fail=True), RenderOnly()])
    write_report(run)
    first_render = min(i for i, c in enumerate(calls) if c.startswith("render"))
    assert sorted(calls[:first_render]) == ["figures", "prepare a", "prepare b"]
    assert calls[first_render:] == ["render a", "render b", "render plain"]  # a failed prepare costs no section
    assert "'a' prepare failed: RuntimeError: no probe today" in capsys.readouterr().err
    assert "section a" in (run / "report.md").read_text()


def test_an_evaluation_run_by_another_spec_is_reported_from_its_recorded_config(tmp_path):
    run = make_run(tmp_path)
    results = io.read_json(run / "results.json")
    extra = [dict(e, evaluation="lr_n40") for e in results["episodes"] if e["evaluation"] == "lr"]
    io.write_json(run / "results.json", {"episodes": results["episodes"] + extra, "summaries": {},
                                         "configs": {"lr_n40": {"type": "position_split"}}})
    write_report(run)  # lr_n40 is not in spec.resolved.yaml
    md = (run / "report.md").read_text()
    row = next(l for l in md.splitlines() if l.startswith("| lr_n40 |"))
    assert "75% [53–89] (n=20)" in row and "+65 pts" in row
    assert "## lr_n40 (" in md
