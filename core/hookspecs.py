"""pxp's hook specifications: one registration hook per plugin kind, commands, report sections, and run events.

Each registration hook receives ``register(name, config_model, factory, summary="")``.
``config_model`` is a pydantic model with ``type: Literal[name]``; ``factory(config)`` builds the
component, and heavy libraries are imported there, never when the plugin module is imported.
What each kind's built object must provide is in :mod:`pxp.core.contracts`.
"""
import pluggy

hookspec = pluggy.HookspecMarker("pxp")
hookimpl = pluggy.HookimplMarker("pxp")


@hookspec
def pxp_register_backbones(register):
    """Register image backbones (feature map + CLS token)."""


@hookspec
def pxp_register_heads(register):
    """Register action heads (feature map → future targets)."""


@hookspec
def pxp_register_objectives(register):
    """Register training objectives (losses)."""


@hookspec
def pxp_register_scenes(register):
    """Register simulated scenes."""


@hookspec
def pxp_register_datasets(register):
    """Register demonstration dataset generators."""


@hookspec
def pxp_register_evaluators(register):
    """Register evaluators (rollouts and scoring)."""


@hookspec
def pxp_register_commands(cli):
    """Add click commands or groups to the ``pxp`` CLI."""


@hookspec
def pxp_report_sections(report):
    """Return report sections (objects with ``title``, ``order``, ``render(report, doc)``) for this run."""


@hookspec
def pxp_library_names():
    """Return names of distributions whose versions every run's manifest records."""


@hookspec
def pxp_drift_checks():
    """Return drift checks (:class:`pxp.core.contracts.DriftCheck`) comparing this machine with committed references."""


@hookspec
def pxp_register_loggers(register):
    """Register run loggers: observers a spec switches on under ``loggers:`` (their objects implement the event hooks below)."""


# ---------------------------------------------------------------- events: observe a run (pxp.core.events)
# ``run`` is a RunInfo: ``run.dir`` (the run directory) and ``run.spec`` (the resolved spec as a dict). An
# observer that raises is reported once, by plugin name, and the run goes on.

@hookspec
def pxp_training_step(run, policy, step, metrics):
    """A policy logged ``metrics`` at ``step`` (a row of its metrics.jsonl plus ``steps_per_s``), in the process that trains it."""


@hookspec
def pxp_episode_done(run, evaluation, episode):
    """An episode of ``evaluation`` finished: its record (results.json's fields), in the driver process."""


@hookspec
def pxp_unit_done(run, stage, unit, status, result, seconds):
    """A dataset, policy or evaluation finished with ``status`` "done", "failed" or "cached" (up to date, skipped)."""


@hookspec
def pxp_run_done(run, results):
    """``pxp run`` / ``pxp eval`` finished its stages; ``results`` is results.json's content (None before any evaluation)."""
