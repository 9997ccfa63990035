"""The ``pxp`` command line."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .errors import PxpError, SpecError, environment_message
from .plugins import get_registry, report_failures

err_console = Console(stderr=True, soft_wrap=True)
_AS_COMMAND = False  # set by main(): the process is the `pxp` command, not a test calling cli()


class PxpGroup(click.Group):
    """Prints PxpErrors as messages (exit 2 for specs, 1 otherwise) instead of tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SpecError as exc:
            _print_spec_error(exc)
            sys.exit(2)
        except PxpError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(exc.exit_code)
        except OSError as exc:  # read-only or full disk: one line, not an h5py traceback
            message = environment_message(exc)
            if message is None:
                raise
            err_console.print(f"[bold red]error:[/] {message}", highlight=False)
            _exit(1)  # no teardown: HDF5 objects left by a failed write can segfault when freed
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: finished work is kept; run the same command again to resume")
            _exit(130)


def _exit(code: int) -> None:
    """Exit at once after an interruption or an environment fault: everything finished is on disk (atomic
    writes, fsynced journals) and the interpreter's teardown (joining pool threads, freeing HDF5 objects
    after a failed write) could hang or crash. Tests that call ``cli`` in-process get a normal SystemExit."""
    if _AS_COMMAND:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _print_spec_error(exc: SpecError) -> None:
    where = f"{exc.source}: " if exc.source else ""
    err_console.print(f"[bold red]invalid spec[/] {where}{len(exc.problems)} problem(s)", highlight=False)
    for path, msg in exc.problems:
        err_console.print(f"  [bold]{path or '<spec>'}[/]: {msg}", highlight=False, soft_wrap=True)


def load_spec_option(spec_path, sets=(), smoke=False, replicates=None):
    """The spec a command names, with its ``--set`` overrides, ``--replicates`` and ``--smoke`` scaling applied,
    validated."""
    from .spec import apply_overrides, parse_yaml, validate_spec

    raw = apply_overrides(parse_yaml(Path(spec_path)), sets)
    if replicates is not None:  # fewer than the spec's: its first seeds (a registered spec's first replicates)
        raw["replicates"] = replicates
        if isinstance(raw.get("replicate_seeds"), list) and len(raw["replicate_seeds"]) > replicates:
            raw["replicate_seeds"] = raw["replicate_seeds"][:replicates]
    if smoke:  # before validation: a smoke run needs nothing only the full scale needs (weights, GPU)
        from .smoke import smoke_spec

        raw = smoke_spec(raw, get_registry())
    return validate_spec(raw, source=str(spec_path))


@click.group(cls=PxpGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pxp", prog_name="pxp")
def cli():
    """pxp: compare robot policies' action heads under distribution shift, end to end in simulation."""


@cli.command("list-plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_plugins(as_json):
    """List installed plugins and the components they register."""
    reg = get_registry()
    rows = [dict(kind=c.kind[:-1], name=c.name, summary=c.summary, plugin=c.plugin,
                 distribution=c.distribution, version=c.version) for c in reg.all()]
    with_components = {c.plugin for c in reg.all()}
    rows += [dict(kind="hooks", name=p.name, summary=_first_doc_line(reg.manager.get_plugin(p.name)), plugin=p.name,
                  distribution=p.distribution, version=p.version)
             for p in reg.plugins if p.name not in with_components]  # report sections, commands
    if as_json:
        click.echo(json.dumps({"components": rows, "plugins": [p.__dict__ for p in reg.plugins],
                               "failures": [f.__dict__ for f in reg.failures]}, indent=2))
        return
    table = Table(title="Installed plugins")
    for col in ("kind", "name", "summary", "distribution", "version"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["kind"], r["name"], r["summary"], r["distribution"], r["version"])
    Console().print(table)  # failed plugins were already reported on stderr by main()


def _first_doc_line(obj) -> str:
    return ((getattr(obj, "__doc__", None) or "").strip().splitlines() or [""])[0]


@cli.command()
@click.argument("spec_path", metavar="SPEC")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a spec field (dotted path).")
def validate(spec_path, sets):
    """Check a spec; print every problem with its field path (exit code 2)."""
    spec = load_spec_option(spec_path, sets)
    click.echo(f"{spec_path}: ok — {len(spec.datasets)} dataset(s), {len(spec.policies)} policy(ies), "
               f"{len(spec.evaluations)} evaluation(s)")


@cli.command()
@click.option("--indent", default=2, show_default=True)
def schema(indent):
    """Print the JSON Schema of the spec, covering every installed plugin."""
    from .spec import spec_json_schema

    click.echo(json.dumps(spec_json_schema(), indent=indent))


@cli.command()
@click.option("--quick", is_flag=True, help="The short form every `pxp run` does (seconds), not the full check.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(quick, as_json):
    """Check this machine against the plugins' golden references (physics, pixels, versions); exit 1 on drift."""
    from .doctor import run_checks

    result = run_checks(get_registry(), quick=quick)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_doctor(result)
    if not result["ok"]:
        sys.exit(1)


def _print_doctor(result: dict) -> None:
    console = Console(soft_wrap=True)
    if not result["checks"]:
        console.print("no installed plugin has drift checks")
    for check in result["checks"]:
        verdict = "[green]ok[/]" if check["ok"] else "[bold red]FAILED[/]"
        console.print(f"{check['name']} (plugin {check['plugin']}, {check['seconds']:.0f} s): {verdict}", highlight=False)
        for line in check["failures"]:
            console.print(f"  [red]differs:[/] {line}", highlight=False)
        for line in check.get("notes", []):
            console.print(f"  [yellow]note:[/] {line}", highlight=False)
        for key, value in (check.get("environment") or {}).items():  # what the check measured with
            shown = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else value
            console.print(f"  [dim]{key}: {shown}[/]", highlight=False)


def floats(text: str) -> tuple:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


def _add_plugin_commands(registry=None) -> None:
    """Let plugins add commands (``pxp run`` and ``pxp eval`` come from the built-in plugin ``pipeline``
    this way); one that fails is reported like a plugin that fails to import."""
    from .plugins import PluginFailure, _env_flag, _last_line

    reg = registry or get_registry()
    for impl in reg.manager.hook.pxp_register_commands.get_hookimpls():
        try:
            impl.function(cli=cli)
        except Exception as exc:
            if _env_flag("PXP_STRICT_PLUGINS"):
                raise PxpError(f"plugin '{impl.plugin_name}' failed to add its commands: {_last_line(exc)}") from exc
            info = next((p for p in reg.plugins if p.name == impl.plugin_name), None)
            reg.failures.append(PluginFailure(impl.plugin_name, getattr(info, "distribution", "?"),
                                              getattr(info, "version", "?"), _last_line(exc)))
    report_failures(reg)


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's time limit, `kill`) stops like Ctrl-C: workers killed, finished work kept."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main() -> None:
    global _AS_COMMAND
    _AS_COMMAND = True
    _stop_on_sigterm()
    try:
        _add_plugin_commands()
    except PxpError as exc:  # strict mode or duplicate registrations
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    cli(prog_name="pxp")
