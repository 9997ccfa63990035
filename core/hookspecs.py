"""pxp's hook specifications: one registration hook per plugin kind, plus commands and report sections.

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
