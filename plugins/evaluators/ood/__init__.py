"""Out-of-distribution evaluators: object positions, camera viewpoints, visual distractors.

- ``position_split``: policies trained on one split of the position grid, tested on N positions of
  another (left → right, near → far in the seed report; default 20 positions × 5 episodes).
- ``viewpoint_grid``: success per θ and per (θ, φ) over an orbit grid around the default camera
  (default 8 × 8, θ up to 25°), each episode at a random grid position.
- ``distractors``: a clean-trained policy in the scene with distractor objects and furniture.

Cheap to import: the rollouts (mujoco, torch) load inside the worker processes only.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from pxp.experiment.evaluation import (EpisodeEvaluator, EpisodeEvaluatorConfig, EpisodeTask, episode_seed, offset_extent,
                                       pick_positions)
from pxp.experiment.grid import SplitConfig, check_grid_split, explicit, viewpoint_grid
from pxp.core.hookspecs import hookimpl

Extent = tuple[tuple[float, float], tuple[float, float]]


class _PositionFields(EpisodeEvaluatorConfig):
    grid: tuple[int, int] = Field((16, 16), description="position grid (rows along dx, columns along dy)")
    extent: Optional[Extent] = Field(None, description="grid extent ((dx_min, dx_max), (dy_min, dy_max)); default: the scene's workspace")

    def smoke(self) -> dict:
        from pxp.core.smoke import GRID_SIDE

        return {**super().smoke(), "grid": tuple(min(n, GRID_SIDE) for n in self.grid)}

    def smoke_split(self, split):
        from pxp.core.smoke import GRID_SIDE
        from pxp.experiment.grid import shrink_split

        return shrink_split(split, *(min(n, GRID_SIDE) for n in self.grid))


# ----------------------------------------------------------------------------- position_split

class PositionSplitConfig(_PositionFields):
    """Test policies on N positions of a split of the position grid."""

    type: Literal["position_split"] = "position_split"
    axis: ClassVar[str] = "Object position"
    split: SplitConfig = Field(SplitConfig(name="right"), description="where the test positions come from")
    train_split: Optional[SplitConfig] = Field(
        None, description="the policies' training split, drawn in the report (default: the complement of split)")
    positions: Optional[int] = Field(20, ge=1, description="test positions drawn from split (None: all of it)")

    def smoke(self) -> dict:
        train = None if self.train_split is None else self.smoke_split(self.train_split)
        return {**super().smoke(), "split": self.smoke_split(self.split), "train_split": train, "positions": 1}

    @model_validator(mode="after")
    def _split_fits_grid(self):
        check_grid_split(self.grid, self.split, count=explicit(self, "positions"))
        if self.train_split is not None:
            check_grid_split(self.grid, self.train_split, field="train_split")
        return self


class PositionSplit(EpisodeEvaluator):
    def episodes(self, ctx) -> list[EpisodeTask]:
        cfg = self.config
        scene = ctx.scene_config(**cfg.scene)
        positions = pick_positions(scene, cfg.split, cfg.positions, cfg.seed, cfg.grid, cfg.extent)
        self._layout = _layout(scene, cfg, positions)
        return [self.task(ctx, pol, cell=cell, offset=off, seed=episode_seed(ctx.seed, cfg.seed, i, e))
                for pol in self.policy_names(ctx)
                for i, (cell, off) in enumerate(positions)
                for e in range(cfg.episodes_per_position)]

    def groups(self) -> list[str]:
        return ["cell"]

    def summarize(self, episodes: list[dict]) -> dict:
        return {**super().summarize(episodes), **getattr(self, "_layout", {})}


def _layout(scene, cfg: PositionSplitConfig, positions) -> dict:
    """What the report draws: the grid extent, training positions (green) and test positions (blue)."""
    from pxp.experiment.grid import position_grid

    extent = cfg.extent or offset_extent(scene)
    g = position_grid(cfg.grid[0], cfg.grid[1], extent)
    train = cfg.train_split or SplitConfig(**{**cfg.split.model_dump(), "complement": not cfg.split.complement})
    return {"extent": [list(a) for a in extent], "test_split": str(cfg.split), "train_split": str(train),
            "train_offsets": g.values(g.select(train)).tolist(), "test_offsets": [list(o) for _, o in positions]}


# ----------------------------------------------------------------------------- viewpoint_grid

class ViewpointGridConfig(_PositionFields):
    """Success per camera viewpoint: θ (tilt from the default view) × φ (direction around it)."""

    type: Literal["viewpoint_grid"] = "viewpoint_grid"
    axis: ClassVar[str] = "Camera viewpoint"
    n_theta: int = Field(8, ge=1)
    n_phi: int = Field(8, ge=1)
    theta_max: float = Field(25.0, ge=0, le=80, description="largest tilt, degrees (θ runs 0..theta_max, both ends)")
    positions_split: SplitConfig = Field(SplitConfig(name="all"), description="random positions are drawn from these cells")
    episodes_per_position: int = Field(2, ge=1, description="episodes per viewpoint, each at a random position")

    def smoke(self) -> dict:
        # two tilts (0 and theta_max: θ > 0 is present) × two directions
        return {**super().smoke(), "n_theta": min(self.n_theta, 2), "n_phi": min(self.n_phi, 2),
                "positions_split": self.smoke_split(self.positions_split)}

    @model_validator(mode="after")
    def _split_fits_grid(self):
        check_grid_split(self.grid, self.positions_split, field="positions_split")
        return self


class ViewpointGrid(EpisodeEvaluator):
    def episodes(self, ctx) -> list[EpisodeTask]:
        cfg = self.config
        scene = ctx.scene_config(**cfg.scene)
        views = viewpoint_grid(cfg.n_theta, cfg.n_phi, cfg.theta_max)
        cells = pick_positions(scene, cfg.positions_split, None, cfg.seed, cfg.grid, cfg.extent)
        # One random position per (viewpoint, episode), drawn once: every policy gets the same ones.
        rng = np.random.default_rng([ctx.seed, cfg.seed])
        draws = rng.integers(0, len(cells), size=(views.n, cfg.episodes_per_position))
        tasks = []
        for pol in self.policy_names(ctx):
            for v, (theta, phi) in enumerate(views.values()):
                for e in range(cfg.episodes_per_position):
                    _, off = cells[draws[v, e]]
                    vc = [int(x) for x in views.rowcol([v])[0]]
                    tasks.append(self.task(ctx, pol, cell=vc, offset=off, view=(float(theta), float(phi)),
                                           seed=episode_seed(ctx.seed, cfg.seed, v, e),
                                           labels={"theta": round(float(theta), 3), "view": [round(float(theta), 3), round(float(phi), 3)]}))
        return tasks

    def groups(self) -> list[str]:
        return ["theta", "view"]

    def report_figures(self, report, doc, name, episodes, summary) -> None:
        from pxp.plugins.evaluators.ood.report import viewpoint_figures

        viewpoint_figures(report, doc, name, episodes, summary)


# ----------------------------------------------------------------------------- distractors

class DistractorsConfig(EpisodeEvaluatorConfig):
    """A policy trained in the clean scene, tested with the distractor objects and furniture back."""

    type: Literal["distractors"] = "distractors"
    axis: ClassVar[str] = "Visual clutter"
    scene: dict = Field(default_factory=lambda: {"clutter": "distractors"}, description="overrides of the scene config")
    offsets: list[tuple[float, float]] = Field([(0.0, 0.0)], min_length=1, description="test positions (dx, dy); default: LIBERO's")
    episodes_per_position: int = Field(20, ge=1)

    def smoke(self) -> dict:
        return {**super().smoke(), "offsets": self.offsets[:1]}


class Distractors(EpisodeEvaluator):
    def episodes(self, ctx) -> list[EpisodeTask]:
        cfg = self.config
        return [self.task(ctx, pol, cell=[i], offset=tuple(off), seed=episode_seed(ctx.seed, cfg.seed, i, e))
                for pol in self.policy_names(ctx)
                for i, off in enumerate(cfg.offsets)
                for e in range(cfg.episodes_per_position)]


@hookimpl
def pxp_register_evaluators(register):
    register("position_split", PositionSplitConfig, PositionSplit,
             summary="test on N positions of a grid split (left→right, near→far)")
    register("viewpoint_grid", ViewpointGridConfig, ViewpointGrid,
             summary="success per camera tilt θ and direction φ, random positions")
    register("distractors", DistractorsConfig, Distractors,
             summary="clean-trained policies in the cluttered scene")
