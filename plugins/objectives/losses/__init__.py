"""Training objectives.

``behavior_cloning``: PARA → cross-entropy over the flattened (height bin × pixel) volume + gripper
cross-entropy; ACT → L1 on normalised positions + gripper cross-entropy.
``point_track_2d``: circle-overlay pretraining. PARA → heatmap cross-entropy with the height
marginalised (identical to a one-bin volume), no gripper; ACT (``space: image``) → L1 on normalised
2D pixel tracks.

An objective is ``factory(config) → objective`` with ``objective(out, batch, head) → (loss, parts)``:
``out`` is the head's output, ``batch`` the training batch (see docs/architecture.md), ``parts`` a
dict of detached scalar tensors named ``loss/<part>`` for metrics.jsonl.
"""
from __future__ import annotations

from pxp.core.hookspecs import hookimpl
from pxp.plugins.objectives.losses.config import BehaviorCloningConfig, PointTrack2DConfig

__all__ = ["BehaviorCloningConfig", "PointTrack2DConfig", "make_behavior_cloning", "make_point_track_2d"]


def make_behavior_cloning(config: BehaviorCloningConfig):
    from pxp.plugins.objectives.losses.compute import BehaviorCloning

    return BehaviorCloning(config)


def make_point_track_2d(config: PointTrack2DConfig):
    from pxp.plugins.objectives.losses.compute import PointTrack2D

    return PointTrack2D(config)


@hookimpl
def pxp_register_objectives(register):
    register("behavior_cloning", BehaviorCloningConfig, make_behavior_cloning,
             summary="PARA: volume CE + gripper CE; ACT: L1 positions + gripper CE")
    register("point_track_2d", PointTrack2DConfig, make_point_track_2d,
             summary="2D point-track pretraining: heatmap CE (PARA) or pixel-track L1 (ACT, space: image)")
