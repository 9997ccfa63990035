"""``pxp run`` and ``pxp eval``: the commands that drive the pipeline (:mod:`pxp.experiment.pipeline`).

The framework's CLI (:mod:`pxp.core.cli`) knows no pipeline; this module is a built-in plugin (entry
point ``pipeline`` in group ``pxp``) that adds these commands through ``pxp_register_commands``, the
same hook any third-party plugin uses.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from pxp.core.cli import err_console, load_spec_option
from pxp.core.hookspecs import hookimpl
from pxp.core.rundir import RunDir
from .pipeline import STAGES, Runner, evaluate_run, resolve_executor
from .training import preflight


@click.command()
@click.argument("spec_path", metavar="SPEC")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Run directory (default runs/<name>).")
@click.option("--force", is_flag=True, help="Redo every stage even if cached.")
@click.option("--stage", "stages", multiple=True, type=click.Choice(list(STAGES)),
              help="Run only these stages (repeatable).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Override the spec's device.")
@click.option("--workers", type=int, help="Worker processes for generation and rollouts.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a spec field (dotted path).")
@click.option("--executor", type=click.Choice(["local", "ray"]),
              help="Where episodes and training run: local process pool or a Ray cluster (default: PXP_EXECUTOR, "
                   "then the spec's executor, then local).")
@click.option("--address", metavar="ADDR", help="Ray cluster address (ray start --head prints it; use token "
                                                "authentication, docs/scaling.md); default: RAY_ADDRESS, else a "
                                                "Ray on this machine.")
@click.option("--smoke", is_flag=True,
              help="The same spec with every size shrunk (64 px, tiny ViT, few cells/steps/episodes): checks every "
                   "stage runs, in minutes on a CPU. Default directory runs/<name>-smoke; results are not comparable.")
@click.option("--replicates", type=click.IntRange(min=1), metavar="K",
              help="Train K replicates of every policy (training seeds differ) and evaluate each on the same "
                   "episodes (overrides the spec's replicates; replicate 0 is the spec's own run).")
def run(spec_path, out, force, stages, device, workers, sets, executor, address, smoke, replicates):
    """Run an experiment: datasets → training → evaluation → report."""
    spec = load_spec_option(spec_path, sets, smoke, replicates)
    preflight(spec, str(spec_path))  # e.g. pretrained weights that cannot be had here: stop before anything is written
    run_dir = out or Path("runs") / spec.name
    executor = resolve_executor(executor, spec)
    _require_ray(executor)
    Runner(spec, run_dir, force=force, device=device, workers=workers, executor=executor,
           address=address).run(stages or STAGES)
    report = RunDir(run_dir).report_html
    click.echo(f"run directory: {run_dir}" + (f"\nreport: {report}" if report.exists() else ""))


def _require_ray(executor: str | None) -> None:
    """Ray is an optional extra: without it, one line saying how to install it (exit 2)."""
    if executor != "ray":
        return
    from pxp.core.execution.ray_cluster import RayMissing, require_ray

    try:
        require_ray()
    except RayMissing as exc:
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)


@click.command("eval")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--episodes", type=click.IntRange(min=1), help="Episodes per position for every evaluation.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a spec field, e.g. evaluations.left_to_right.positions=10.")
@click.option("--workers", type=int)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--executor", type=click.Choice(["local", "ray"]), help="As for pxp run.")
@click.option("--address", metavar="ADDR", help="As for pxp run.")
def eval_(run_dir, episodes, sets, workers, device, executor, address):
    """Re-evaluate a run's saved checkpoints; rewrite results.json and the report."""
    _require_ray(executor)
    results = evaluate_run(run_dir, episodes, workers=workers, sets=sets, device=device, report=True,
                           executor=executor, address=address)
    click.echo(f"results: {results}\nreport: {RunDir(run_dir).report_html}")


@hookimpl
def pxp_register_commands(cli):
    cli.add_command(run)
    cli.add_command(eval_)
