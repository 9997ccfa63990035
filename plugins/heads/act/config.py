"""The ACT-style regression head's config."""
from __future__ import annotations

from typing import ClassVar, Literal, Union

from pydantic import ConfigDict, Field, model_validator
from pxp.core.contracts import HeadConfig



class ActRegressionConfig(HeadConfig):
    model_config = ConfigDict(extra="forbid")
    output_kind: ClassVar[str] = "regression"  # box-normalised points: see pxp.core.contracts.RegressionHead
    label: ClassVar[str] = "ACT"  # how reports name this head
    type: Literal["act_regression"] = "act_regression"
    horizon: int = Field(4, gt=0, description="T future steps predicted")
    hidden_dim: int = Field(256, gt=0)
    mlp_layers: int = Field(2, ge=1)
    space: Literal["world", "image"] = Field("world", description="world xyz, or 2D pixel tracks (pretraining)")
    condition_on_state: bool = Field(True, description="append eef position (normalised) and gripper to the CLS token")
    condition_on_eef: Union[bool, Literal["height"]] = Field(
        True, description="with condition_on_state: include the eef position (false: the gripper alone, so the "
                          "target cannot be read off where the arm already is; height: the eef's z and the "
                          "gripper, which say when to close the gripper but not where the object is)")
    readout: Literal["cls", "queries", "spatial_softmax"] = Field(
        "cls", description="cls: regress from the CLS token (the seed's ACT); queries: one learned query per "
                           "future step cross-attends over the patch tokens (LeRobot's ACT decoder, one layer); "
                           "spatial_softmax: `keypoints` learned feature channels, each read out as its expected "
                           "(x, y) over the feature map (robomimic's and Levine et al.'s visuomotor readout)")
    relative_to_eef: bool = Field(
        False, description="regress each target as an offset from the current end-effector position (the same "
                           "box-normalised units; the output still reaches any point): delta actions")
    keypoints: int = Field(32, gt=0, description="spatial_softmax: how many keypoints (2 coordinates each)")
    workspace_low: tuple[float, float, float] | None = Field(
        None, description="null: the scene's workspace box (the same for every split)")
    workspace_high: tuple[float, float, float] | None = None

    @model_validator(mode="after")
    def _eef_choice_needs_state(self):
        if self.condition_on_eef is not True and not self.condition_on_state:
            raise ValueError(f"condition_on_eef: {str(self.condition_on_eef).lower()} only applies with "
                             "condition_on_state: true (without state there is no end-effector position to leave out)")
        return self

    @model_validator(mode="after")
    def _offsets_need_world_space(self):
        if self.relative_to_eef and self.space != "world":
            raise ValueError("relative_to_eef needs space: world (a 2D track has no end-effector position to "
                             "offset from)")
        return self

    def smoke(self) -> dict:
        return {"hidden_dim": min(self.hidden_dim, 64)}
