"""Configs of the built-in objectives (see ``__init__``)."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field
from pxp.core.contracts import ObjectiveConfig



class BehaviorCloningConfig(ObjectiveConfig):
    model_config = ConfigDict(extra="forbid")
    accepts: ClassVar[tuple[str, ...]] = ("volume", "regression")  # head output kinds it has a loss for
    type: Literal["behavior_cloning"] = "behavior_cloning"
    position_weight: float = Field(1.0, ge=0)
    gripper_weight: float = Field(1.0, ge=0)


class PointTrack2DConfig(ObjectiveConfig):
    model_config = ConfigDict(extra="forbid")
    accepts: ClassVar[tuple[str, ...]] = ("volume", "regression")
    type: Literal["point_track_2d"] = "point_track_2d"
