"""ACT-style coordinate regression: CLS token (+ proprioception) → MLP → T × 3 positions + gripper.

Positions are regressed with a linear output in coordinates normalised to a workspace box (0..1
inside it) and de-normalised to world metres; the box comes from the config or, when left null,
from the scene (``end_effector_box()`` of the scene config) — the same box for every split of the
grid, never the training data's range. See docs/policies.md for how this ACT differs from LeRobot's.
``space: image`` regresses normalised 2D pixel tracks instead (point-track pretraining).
"""
from __future__ import annotations

from pxp.core.hookspecs import hookimpl
from pxp.plugins.heads.act.config import ActRegressionConfig

__all__ = ["ActRegressionConfig", "make_act_head"]


def make_act_head(config: ActRegressionConfig, backbone):
    """``factory(config, backbone)``: the head reads ``backbone.embed_dim``."""
    from pxp.plugins.heads.act.model import ActHead

    return ActHead(config, int(backbone.embed_dim))


@hookimpl
def pxp_register_heads(register):
    register("act_regression", ActRegressionConfig, make_act_head,
             summary="ACT baseline: CLS → MLP → T xyz (linear, scene-box normalised) + gripper")
