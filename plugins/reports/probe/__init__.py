"""The probe as a plugin: the ``pxp probe`` command and the report's probe section.

No rollout: the scripted expert drives the arm to its pre-grasp pose, the frame is rendered and each
trained policy is asked for its targets (the driver is :mod:`.driver`; docs/evaluation.md).
"""
from __future__ import annotations

from pathlib import Path

import click

from pxp.core import io
from pxp.core.contracts import ReportSection
from pxp.core.hookspecs import hookimpl
from pxp.core.rundir import RunDir


@click.command("probe")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--points", type=click.IntRange(min=2), default=9, show_default=True, help="Positions per axis line.")
@click.option("--thetas", default="0,5,10,15,20,25", show_default=True, help="Camera tilts θ (degrees).")
@click.option("--phis", default="0,90,180,270", show_default=True, help="Camera directions φ (degrees) for θ > 0.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--force", is_flag=True, help="Probe again even if probe.json is up to date.")
@click.option("--report", "rewrite_report", is_flag=True, help="Rewrite report.md/html with the probe section.")
def probe_command(run_dir, points, thetas, phis, device, force, rewrite_report):
    """Does each policy's grasp target follow the object? (no rollout; see docs/evaluation.md)"""
    from rich.console import Console
    from rich.table import Table

    from pxp.core.cli import err_console, floats
    from pxp.experiment.pipeline import resolve_device
    from pxp.plugins.reports.probe.driver import ProbeSettings, read_spec_seed, run_probe, summary_rows

    settings = ProbeSettings(points=points, thetas=floats(thetas), phis=floats(phis), seed=read_spec_seed(run_dir))
    path = run_probe(run_dir, device=resolve_device(device), settings=settings, force=force,
                     log=lambda m: err_console.print(m, highlight=False))
    data = io.read_json(path)
    table = Table(title="median grasp target error, xy cm (to the expert's grasp point; in brackets: to the nearest rim side)")
    for col in ("policy", "axis", "n", "in training range", "outside", "max"):
        table.add_column(col)
    for row in summary_rows(data):
        table.add_row(*map(str, row))
    Console().print(table)
    if rewrite_report:
        from pxp.experiment.report import write_report

        write_report(run_dir)
    click.echo(f"probe: {path}\nplots: {RunDir(run_dir).plots}/probe_*.png")


class ProbeSection(ReportSection):
    title, order = "Probe", 30

    def prepare(self, report) -> None:
        """Run the probe if the run has trained policies and it is not up to date (cached otherwise)."""
        import sys

        from pxp.plugins.reports.probe import driver as probe

        if report.section_on("probe"):
            try:
                probe.ensure_probe(report.run_dir, device=report.device, log=report.log, registry=report.registry)
            except Exception as exc:  # the probe is extra: never lose the report over it
                print(f"warning: probe not run: {type(exc).__name__}: {exc}", file=sys.stderr)

    def render(self, report, doc) -> None:
        """``pxp probe``'s results, when there are any."""
        from pxp.plugins.reports.probe import driver as probe

        run_dir = report.run_dir
        data = io.read_json(probe.probe_file(run_dir))
        if not isinstance(data, dict) or not data.get("samples"):
            return
        doc.h(2, "Probe: does the grasp target follow the object?")
        st = data.get("settings", {})
        doc.p("No rollout: the scripted expert drives the arm to its pre-grasp pose above the bowl, the frame is "
              "rendered and each policy is asked for its targets. Grasp target = the first predicted target with the "
              "gripper commanded closed, else the lowest one. Error = its horizontal distance to the expert's grasp "
              "point (in brackets: to the nearest of the bowl's grasp points, either rim side). Objects swept along dx "
              f"and dy through the workspace centre ({st.get('points')} positions each), then the camera at the default "
              f"position over θ = {', '.join(f'{t:g}' for t in st.get('thetas', []))}° × φ = "
              f"{', '.join(f'{p:g}' for p in st.get('phis', []))}°. See docs/evaluation.md (Probe).")
        rows = [[r[0], report.label(r[0]), *r[1:]] for r in probe.summary_rows(data)]
        doc.table(["Policy", "Head", "Axis", "n", "Median error in training range, cm", "Median outside, cm", "Max, cm"],
                  rows)
        for axis, path in probe.plot_paths(run_dir).items():
            if path.exists():
                doc.img(report.rel(path), f"probe along {probe.AXIS_LABEL[axis]}: shaded = training range")
        t = data.get("timing") or {}
        per = ", ".join(f"{n} {s:.1f} s" for n, s in (t.get("policy_seconds") or {}).items())
        doc.p(f"Probe cost: {t.get('states')} states rendered in {t.get('frames_seconds')} s at "
              f"{t.get('image_size')} px (scene built in {t.get('scene_build_seconds')} s); queries: {per} "
              f"({t.get('device')}).")


@hookimpl
def pxp_register_commands(cli):
    cli.add_command(probe_command)


@hookimpl
def pxp_report_sections(report):
    return [ProbeSection()]
