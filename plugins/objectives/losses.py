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

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pxp.core.hookspecs import hookimpl


class BehaviorCloningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["behavior_cloning"] = "behavior_cloning"
    position_weight: float = Field(1.0, ge=0)
    gripper_weight: float = Field(1.0, ge=0)


class PointTrack2DConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["point_track_2d"] = "point_track_2d"


def make_behavior_cloning(config: BehaviorCloningConfig):
    from pxp.plugins.objectives import _losses_impl

    return _losses_impl.BehaviorCloning(config)


def make_point_track_2d(config: PointTrack2DConfig):
    from pxp.plugins.objectives import _losses_impl

    return _losses_impl.PointTrack2D(config)


@hookimpl
def pxp_register_objectives(register):
    register("behavior_cloning", BehaviorCloningConfig, make_behavior_cloning,
             summary="PARA: volume CE + gripper CE; ACT: L1 positions + gripper CE")
    register("point_track_2d", PointTrack2DConfig, make_point_track_2d,
             summary="2D point-track pretraining: heatmap CE (PARA) or pixel-track L1 (ACT, space: image)")
