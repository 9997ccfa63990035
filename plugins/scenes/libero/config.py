"""The LIBERO bowl→plate scene's config and its measured layout (cheap to import)."""
from __future__ import annotations

import os

from typing import ClassVar, Literal, Optional, Tuple

from pydantic import ConfigDict, Field, field_validator, model_validator

from pxp.core.contracts import Outcomes, SceneConfig
from pxp.plugins.scenes.libero.outcomes import OUTCOMES

# Measured on LIBERO-Spatial task 0 after settling (docs/scene.md): nominal object centres before the offset,
# table extent.
BOWL_XY, PLATE_XY = (-0.065, 0.200), (0.055, 0.200)
BOWL_RADIUS, PLATE_RADIUS = 0.054, 0.069
TABLE_X, TABLE_Y = (-0.50, 0.50), (-0.60, 0.60)
TABLE_Z = 0.90  # table top
EEF_HOME = (-0.21, 0.0, 1.17)  # grip site at the robot's home pose (before joint noise)
# End-effector targets stay within this distance (xy) of the objects' footprint: the grasp is at the bowl
# rim (± 0.047 m in y), the release over the plate is offset by the same amount, objects jitter ± 5 mm.
TARGET_MARGIN_XY = 0.08
TARGET_TOP_Z = EEF_HOME[2] + 0.08  # above home, with room for the home-pose noise
CLUTTER = ("clean", "distractors")
ROBOT_MODES = ("shown", "hidden", "circle")


def offset_on_table(dx: float, dy: float) -> bool:
    """Whether bowl and plate, both shifted by (dx, dy), lie entirely on the table top."""
    for (x, y), r in ((BOWL_XY, BOWL_RADIUS), (PLATE_XY, PLATE_RADIUS)):
        x, y = x + dx, y + dy
        if not (TABLE_X[0] + r <= x <= TABLE_X[1] - r and TABLE_Y[0] + r <= y <= TABLE_Y[1] - r):
            return False
    return True


def check_offset(dx: float, dy: float) -> None:
    if not offset_on_table(dx, dy):
        raise ValueError(f"object offset ({dx:+.3f}, {dy:+.3f}) m puts the bowl or plate off the table "
                         f"(table x {TABLE_X}, y {TABLE_Y}; bowl at {BOWL_XY}, plate at {PLATE_XY} before the offset)")


# MuJoCo's accepted values on Linux (mujoco/rendering/classic/gl_context.py).
GL_BACKENDS = ("egl", "osmesa", "glfw", "glx", "enable", "enabled", "on", "true", "1",
               "disable", "disabled", "off", "false", "0")


def check_view(theta: float, phi: float) -> None:
    if not 0.0 <= theta <= 80.0:
        raise ValueError(f"view theta must be in [0, 80] degrees (tilt from the default agentview), got {theta}")


class LiberoSceneConfig(SceneConfig):
    """LIBERO-Spatial task 0 (black bowl → plate) with pxp's placement, cameras and executor."""

    model_config = ConfigDict(extra="forbid")
    outcomes: ClassVar[Outcomes] = OUTCOMES  # PLACE / GRASP / MISS, their weights and plot/video styles
    image_key: ClassVar[str] = "agentview_rgb"  # the camera its demonstrations store images under
    tracked: ClassVar[tuple] = ("bowl_pos", "plate_pos")  # object states its demonstrations keep
    episode_checks: ClassVar[tuple] = ("libero_success",)  # the expert's own success checks, kept per demo
    type: Literal["libero_bowl_plate"] = "libero_bowl_plate"
    image_size: int = Field(448, ge=16, le=2048, description="square image side, pixels")
    clutter: str = Field("clean", description="clean (distractors and furniture removed) | distractors")
    offset: Tuple[float, float] = Field((0.0, 0.0), description="default (dx, dy) shift of bowl and plate, m")
    view: Optional[Tuple[float, float]] = Field(
        None, description="default camera: None = agentview, or (theta, phi) degrees orbiting it")
    robot: str = Field("shown", description="shown | hidden | circle (hidden + orange disc at the eef pixel)")
    circle_radius: float = Field(8.0, gt=0, description="circle overlay radius, pixels")
    circle_color: Tuple[int, int, int] = (255, 140, 0)
    grasp_rim: Literal["plus_y", "nearer_y0"] = Field(
        "plus_y", description="the rim side the expert grasps: plus_y (the +y side everywhere: one mode for the "
                              "whole workspace) | nearer_y0 (the side nearer y = 0: switches at the left/right boundary)")
    seed: int = 0
    object_jitter: float = Field(0.005, ge=0, le=0.03, description="uniform ± per-object xy noise, m")
    robot_noise: float = Field(0.01, ge=0, le=0.1, description="gaussian std of home joint noise, rad")
    workspace_dx: Tuple[float, float] = (-0.32, 0.07)
    workspace_dy: Tuple[float, float] = (-0.50, 0.10)
    settle_steps: int = Field(10, ge=1)
    servo_gain: float = Field(20.0, gt=0, description="OSC action per metre of error (clipped to ±1)")
    servo_max_steps: int = Field(80, ge=1, description="control steps per target, at most")
    servo_tol: float = Field(0.01, gt=0, description="target reached within this distance, m")
    lift_threshold: float = Field(0.03, gt=0, description="GRASP: bowl this far above its rest height, held")
    place_radius: float = Field(0.04, gt=0, description="PLACE: bowl centre within this xy distance of the plate")
    bowl_on_plate_dz: float = Field(0.004, description="bowl minus plate body height when the bowl rests on the plate")
    place_height_tol: float = Field(0.006, gt=0, description="PLACE: |bowl - plate - bowl_on_plate_dz| below this")

    def smoke(self) -> dict:
        """Smoke scale: 64 px images, the circle overlay scaled with them."""
        from pxp.core.smoke import IMAGE_SIZE

        radius = max(2.0, round(self.circle_radius * IMAGE_SIZE / self.image_size, 1))
        return {"image_size": IMAGE_SIZE, "circle_radius": radius}

    @field_validator("clutter")
    @classmethod
    def _clutter(cls, v: str) -> str:
        if v not in CLUTTER:
            raise ValueError(f"unknown clutter {v!r}: expected one of {CLUTTER}")
        return v

    @field_validator("robot")
    @classmethod
    def _robot(cls, v: str) -> str:
        if v not in ROBOT_MODES:
            raise ValueError(f"unknown robot mode {v!r}: expected one of {ROBOT_MODES}")
        return v

    @model_validator(mode="after")
    def _geometry(self):
        check_offset(*self.offset)
        if self.view is not None:
            check_view(*self.view)
        for name in ("workspace_dx", "workspace_dy"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (min, max), got {(lo, hi)}")
        for corner in ((a, b) for a in self.workspace_dx for b in self.workspace_dy):
            check_offset(*corner)
        return self

    check_offset = staticmethod(check_offset)
    check_view = staticmethod(check_view)

    def preflight(self) -> str | None:
        """MuJoCo's rendering backend: a MUJOCO_GL it does not know makes every worker's ``import mujoco`` fail."""
        value = os.environ.get("MUJOCO_GL", "").strip().lower()
        if value and value not in GL_BACKENDS:
            return (f"MUJOCO_GL={os.environ['MUJOCO_GL']} is not a rendering backend MuJoCo knows; "
                    "use egl (headless), osmesa or glfw, or unset it")
        return None

    def offset_extent(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """((dx_min, dx_max), (dy_min, dy_max)) of the object-offset grid, m."""
        return tuple(map(float, self.workspace_dx)), tuple(map(float, self.workspace_dy))

    def end_effector_box(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """(low, high) world xyz box holding every end-effector target of this scene: the bowl and
        plate footprints over the whole offset grid (``workspace_dx/dy``) grown by the grasp/release
        margin, the robot's home pose, and heights from the table top to above home.

        Regression heads normalise to it (pxp.experiment.training): one box for every split of the grid,
        so a policy trained on one half can still output targets on the other."""
        xs = [BOWL_XY[0], PLATE_XY[0]]
        ys = [BOWL_XY[1], PLATE_XY[1]]
        (dx0, dx1), (dy0, dy1), m = self.workspace_dx, self.workspace_dy, TARGET_MARGIN_XY
        low = (min(min(xs) + dx0 - m, EEF_HOME[0]), min(min(ys) + dy0 - m, EEF_HOME[1]), TABLE_Z)
        high = (max(max(xs) + dx1 + m, EEF_HOME[0]), max(max(ys) + dy1 + m, EEF_HOME[1]), TARGET_TOP_Z)
        return tuple(round(v, 6) for v in low), tuple(round(v, 6) for v in high)
