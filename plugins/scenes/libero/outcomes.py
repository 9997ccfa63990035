"""How a bowl→plate episode ends (PLACE / GRASP / MISS, declared to pxp as the scene's ``Outcomes``) and,
when it fails, the first thing that went wrong (:class:`BowlTracker`, the scene's episode tracker).

- ``PLACE``: the bowl ended on the plate (success).
- ``GRASP``: the bowl was lifted but not placed.
- ``MISS``: the bowl was never lifted.
- weighted score: PLACE = 1, GRASP = 0.5, MISS = 0 (the seed's "Wtd" column).
"""
from __future__ import annotations

import math

import numpy as np

from pxp.core.contracts import Outcomes

OUTCOMES = Outcomes(
    names=("PLACE", "GRASP", "MISS"),
    weights={"PLACE": 1.0, "GRASP": 0.5, "MISS": 0.0},
    rates={"place": ("PLACE",), "grasp": ("GRASP",),  # grasp: lifted but NOT placed
           "grasped_or_better": ("PLACE", "GRASP"), "miss": ("MISS",)},
    colours={"PLACE": "#2ca02c", "GRASP": "#f0b400", "MISS": "#d62728", "ERROR": "#7f7f7f"},
    badges={"PLACE": ("✔ PLACE", (40, 170, 60)), "GRASP": ("↑ GRASP", (230, 180, 0)), "MISS": ("✘ MISS", (210, 40, 40))},
    legend="green = placed, yellow = grasped, red = missed (label: places/episodes)",
)

# Thresholds for the diagnostics (not for the outcome: that is the scene's stage detection).
REACH_DIST = 0.08  # m, grip site ↔ bowl origin; the expert grasps the rim ≈ 6 cm from the origin
LIFT_HEIGHT = 0.03  # m above the bowl's resting height counts as "lifted"
FAILURES = ("never reached the bowl", "closed too early", "never closed the gripper", "never lifted",
            "grasp failed", "dropped", "placed off the plate", "never released")


class BowlTracker:
    """Bookkeeping between servo calls: distances, lift, grip events (pxp's ``EpisodeTracker`` contract)."""

    def __init__(self, obs: dict):
        self.rest_z = float(obs["bowl_pos"][2])
        self.last = obs
        self.min_eef_bowl = _dist(obs["eef_pos"], obs["bowl_pos"])
        self.max_lift = 0.0
        self.closed = False  # the current gripper command
        self.close_dist: float | None = None  # eef–bowl distance when the gripper was first commanded closed
        self.close_z: float | None = None  # eef height then
        self.lift_asked = False  # a target above close_z + LIFT_HEIGHT was commanded with the hand closed
        self.lifted = False
        self.dropped = False  # the bowl fell out of the closed hand
        self.final: dict = {}

    def command(self, gripper: float, target_z: float) -> None:
        closed = gripper >= 0.5
        if closed and self.close_dist is None:
            self.close_dist = _dist(self.last["eef_pos"], self.last["bowl_pos"])  # where it was when told to close
            self.close_z = float(self.last["eef_pos"][2])
        if closed and self.close_z is not None and target_z > self.close_z + LIFT_HEIGHT:
            self.lift_asked = True
        self.closed = closed

    def update(self, obs: dict) -> None:
        self.last = obs
        d = _dist(obs["eef_pos"], obs["bowl_pos"])
        self.min_eef_bowl = min(self.min_eef_bowl, d)
        lift = float(obs["bowl_pos"][2]) - self.rest_z
        self.max_lift = max(self.max_lift, lift)
        if lift > LIFT_HEIGHT:
            self.lifted = True
        elif self.lifted and lift < LIFT_HEIGHT / 2 and self.closed and d > REACH_DIST:
            self.dropped = True  # down again, hand still closed but away from it: it fell out (not lowered)

    def badge(self, obs: dict) -> str:
        """The stage a video frame shows; it follows outcome(): once lifted, GRASP stays until a PLACE."""
        stage = obs.get("stage", "MISS")
        return "GRASP" if stage == "MISS" and self.lifted else stage

    def finish(self, obs: dict) -> None:
        self.update(obs)
        self.final = {"bowl_plate": _dist(obs["bowl_pos"][:2], obs["plate_pos"][:2]),
                      "lift": float(obs["bowl_pos"][2]) - self.rest_z}

    def diagnostics(self, outcome: str) -> dict:
        return {
            "min_eef_bowl_dist": round(self.min_eef_bowl, 4),
            "max_bowl_lift": round(self.max_lift, 4),
            "final_bowl_plate_dist": round(self.final.get("bowl_plate", math.nan), 4),
            "gripper_closed_at_dist": None if self.close_dist is None else round(self.close_dist, 4),
            "first_failure": self.first_failure(outcome),
        }

    def first_failure(self, outcome: str) -> str | None:
        """The earliest stage that went wrong, in task order; None for a PLACE."""
        if outcome == "PLACE":
            return None
        if self.min_eef_bowl > REACH_DIST:
            return "never reached the bowl"
        if self.close_dist is None:
            return "never closed the gripper"
        if self.close_dist > REACH_DIST:
            return "closed too early"
        if not self.lifted:  # a hand that closed at the bowl and was never told to rise did not fail a grasp
            return "grasp failed" if self.lift_asked else "never lifted"
        if self.dropped:
            return "dropped"
        if self.final.get("lift", 0.0) > LIFT_HEIGHT:
            return "never released"
        return "placed off the plate"


def _dist(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)))
