"""ACT-style coordinate regression: CLS token (+ proprioception) → MLP → T × 3 positions + gripper.

Positions are regressed with a linear output in coordinates normalised to a workspace box (0..1
inside it) and de-normalised to world metres; the box comes from the config or, when left null,
from the scene (``workspace_bounds()`` of the scene config) — the same box for every split of the
grid, never the training data's range. See docs/policies.md for how this ACT differs from LeRobot's.
``space: image`` regresses normalised 2D pixel tracks instead (point-track pretraining).
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pxp.core.hookspecs import hookimpl


class ActRegressionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["act_regression"] = "act_regression"
    horizon: int = Field(4, gt=0, description="T future steps predicted")
    hidden_dim: int = Field(256, gt=0)
    mlp_layers: int = Field(2, ge=1)
    space: Literal["world", "image"] = Field("world", description="world xyz, or 2D pixel tracks (pretraining)")
    condition_on_state: bool = Field(True, description="append eef position (normalised) and gripper to the CLS token")
    readout: Literal["cls", "queries"] = Field(
        "cls", description="cls: regress from the CLS token (the seed's ACT); queries: one learned query per "
                           "future step cross-attends over the patch tokens (LeRobot's ACT decoder, one layer)")
    workspace_low: tuple[float, float, float] | None = Field(
        None, description="null: the scene's workspace box (the same for every split)")
    workspace_high: tuple[float, float, float] | None = None

    def smoke(self) -> dict:
        return {"hidden_dim": min(self.hidden_dim, 64)}


def make_act_head(config: ActRegressionConfig, backbone):
    """``factory(config, backbone)``: the head reads ``backbone.embed_dim``."""
    from pxp.plugins.heads import _act_impl

    return _act_impl.ActHead(config, int(backbone.embed_dim))


@hookimpl
def pxp_register_heads(register):
    register("act_regression", ActRegressionConfig, make_act_head,
             summary="ACT baseline: CLS → MLP → T xyz (linear, scene-box normalised) + gripper")
