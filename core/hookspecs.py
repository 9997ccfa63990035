"""pxp's hook specifications: one registration hook per plugin kind.

Each hook receives ``register(name, config_model, factory, summary="")``.
``config_model`` is a pydantic model with ``type: Literal[name]``; ``factory(config)``
builds the component and is the only place heavy libraries get imported.
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
