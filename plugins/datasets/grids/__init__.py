"""Demo dataset generators: ``position_grid`` and ``viewpoint_grid`` (scripted expert, HDF5 output).

Both plan a list of episodes (cell × repeat), run them with the scene's scripted expert in worker
processes (the run's executor, ``ctx.executor``: one scene per worker, reused), and append each finished
episode to ``<path>.partial`` as it arrives; the file is renamed to ``<path>`` when all are in.
A rerun resumes: episodes already in the partial file are not run again.

Cheap to import (spawn workers import this module to find :func:`run_episode`): no mujoco / torch.
"""
from __future__ import annotations

import abc

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Tuple

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from pxp.core.contracts import DatasetConfig, DatasetGenerator
from pxp.experiment.grid import Grid, SplitConfig, check_grid_split, position_grid, split_cells, viewpoint_grid
from pxp.core.hookspecs import hookimpl
from pxp.experiment.evaluation import episode_seed  # (base, index): independent of worker count and order

FILTER_KEYS = ("left", "right", "near", "far")  # the halves each grid dataset lists as robomimic filter keys


class _GridDatasetConfig(DatasetConfig):
    model_config = ConfigDict(extra="forbid")
    filter_keys: ClassVar[tuple] = FILTER_KEYS  # what a policy's filter_key may name (checked by pxp validate)

    split: SplitConfig = Field(SplitConfig(), description="which cells get episodes: all, left, not:left, random:20, …")
    episodes_per_cell: int = Field(1, ge=1)
    circle_overlay: bool = Field(False, description="hide the robot and draw a disc at the end-effector pixel")
    clutter: Optional[Literal["clean", "distractors"]] = Field(None, description="None: the scene's setting")
    image_size: Optional[int] = Field(None, ge=16, description="square image side in pixels; None: the scene's")
    seed: int = Field(0, description="base seed; episode i uses a seed derived from (seed, i)")
    scene: dict = Field(default_factory=dict, description="overrides for the spec's scene section")
    compression_level: int = Field(4, ge=0, le=9, description="gzip level of the images")

    def smoke(self) -> dict:
        """Smoke scale: one episode per cell, a 2-cell-wide grid (subclasses), the same split names."""
        from pxp.core.smoke import EPISODES, IMAGE_SIZE

        out = {"episodes_per_cell": EPISODES}
        if self.image_size is not None:
            out["image_size"] = IMAGE_SIZE
        return out

    def _smoke_grid(self, rows: int, cols: int, make_grid, **kw) -> dict:
        """The smallest grid (within rows × cols) where the split keeps cells, and the split for it."""
        from pxp.experiment.grid import smallest_grid

        if self.split.name == "all" and not self.split.complement:
            kw["shapes"] = ((2, 2),)  # every filter key (a half of the grid) keeps a cell at smoke scale
        rows, cols, split = smallest_grid(self.split, rows, cols, make_grid, **kw)
        return {**_GridDatasetConfig.smoke(self), "split": split}, rows, cols

    def scene_overrides(self) -> dict:
        """The ``scene`` dict plus the shortcut fields (which win, and must not contradict it)."""
        short = {"robot": "circle" if self.circle_overlay else None, "clutter": self.clutter,
                 "image_size": self.image_size}
        short = {k: v for k, v in short.items() if v is not None}
        clash = [k for k, v in short.items() if k in self.scene and self.scene[k] != v]
        if clash:
            raise ValueError(f"dataset sets {clash} both directly and in scene: {{...}} with different values")
        return {**self.scene, **short}


class PositionGridConfig(_GridDatasetConfig):
    """rows × cols object offsets (bowl and plate shifted together) over the scene's workspace."""

    type: Literal["position_grid"] = "position_grid"
    rows: int = Field(16, ge=1, description="cells along dx (away from the robot)")
    cols: int = Field(16, ge=1, description="cells along dy (image left → right)")
    extent: Optional[Tuple[Tuple[float, float], Tuple[float, float]]] = Field(
        None, description="((dx_min, dx_max), (dy_min, dy_max)) in m; None: the scene's workspace")
    view: Optional[Tuple[float, float]] = Field(None, description="(theta, phi) degrees; None: the scene's camera")
    jitter: bool = Field(False, description="draw each episode's offset uniformly within its cell (continuous "
                                            "positions over the split's region) instead of at the cell centre")

    def smoke(self) -> dict:
        out, rows, cols = self._smoke_grid(self.rows, self.cols, lambda r, c: position_grid(r, c, ((0, 1), (0, 1))))
        return {**out, "rows": rows, "cols": cols}

    @model_validator(mode="after")
    def _split_fits_grid(self):
        check_grid_split((self.rows, self.cols), self.split, grid_field="rows")
        return self


class ViewpointGridConfig(_GridDatasetConfig):
    """n_theta × n_phi camera orbits around the default view, object offset drawn per episode."""

    type: Literal["viewpoint_grid"] = "viewpoint_grid"
    n_theta: int = Field(8, ge=1, description="tilts from 0 to theta_max (both included)")
    n_phi: int = Field(8, ge=1, description="directions around the axis, 360/n_phi apart")
    theta_max: float = Field(25.0, ge=0, le=80)
    extent: Optional[Tuple[Tuple[float, float], Tuple[float, float]]] = Field(
        None, description="offsets are drawn uniformly from this ((dx..), (dy..)); None: the scene's workspace")

    def smoke(self) -> dict:
        # n_theta stays 2 when it was: one θ row would sit at theta_max / 2, and "rows:0" must stay θ = 0
        make = lambda r, c: viewpoint_grid(r, c, self.theta_max)
        out, rows, cols = self._smoke_grid(self.n_theta, self.n_phi, make, shapes=((2, 1), (2, 2)))
        return {**out, "n_theta": rows, "n_phi": cols}

    @model_validator(mode="after")
    def _split_fits_grid(self):
        check_grid_split((self.n_theta, self.n_phi), self.split, grid_field="n_theta")
        return self


# ---------------------------------------------------------------------------------------------
# Episodes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoTask:
    """Everything a worker needs for one demonstration (picklable: the scene config is a pydantic model)."""

    index: int
    cell: int
    row: int
    col: int
    offset: tuple[float, float]
    view: Optional[tuple[float, float]]
    seed: int
    scene_config: Any
    scene_key: str
    plugins: Any = None  # the run's RegistryRecipe: the worker builds the scene with the same plugins


def run_episode(task: DemoTask) -> dict:
    """Worker side: reset the (cached) scene, run the expert with recording, pack for the writer."""
    from pxp.core.plugins import registry_from_recipe
    from pxp.core.execution import worker_cache

    registry = registry_from_recipe(task.plugins)
    scene = worker_cache(task.scene_key, lambda: registry.create("scenes", task.scene_config), slot="scene")
    scene.reset(offset=task.offset, view=task.view, seed=task.seed)
    ep = scene.run_expert(record=True)
    return _pack(task, ep)


def _pack(task: DemoTask, ep: dict) -> dict:
    from pxp.core.camera import Camera

    scene = task.scene_config
    tracked = tuple(getattr(scene, "tracked", ()))  # object states the scene keeps in its demos: "<object>_pos"
    phases = list(dict.fromkeys(ep["phase"].tolist()))
    attrs = {"cell": task.cell, "cell_rc": (task.row, task.col), "offset": task.offset,
             "viewpoint": task.view if task.view is not None else (0.0, 0.0), "seed": task.seed,
             **{f"{k.removesuffix('_pos')}_init": ep[k][0] for k in tracked},
             **{f"{k.removesuffix('_pos')}_final": ep[k][-1] for k in tracked},
             **{k: bool(ep[k]) for k in getattr(scene, "episode_checks", ())},
             "outcome": str(ep["outcome"]), "steps": int(ep["steps"]), "phases": phases}
    obs = {scene.image_key: ep["image"], "eef_pos": ep["eef_pos"], "eef_pixel": ep["eef_pixel"],
           "gripper": ep["gripper"], **{k: ep[k] for k in tracked}}
    extra = {"phase": np.array([phases.index(p) for p in ep["phase"].tolist()], np.int8)}
    return {"obs": obs, "actions": ep["action"], "camera": Camera.from_dict(ep["camera"]), "extra": extra,
            "attrs": attrs, "success": ep["outcome"] == scene.outcomes.success}


# ---------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------
class GridGenerator(DatasetGenerator, abc.ABC):
    """Common driver: plan episodes, skip finished ones, run the rest, write as they arrive."""

    name = ""

    def __init__(self, cfg):
        self.cfg = cfg

    @abc.abstractmethod
    def grid(self, scene_cfg) -> Grid:
        """The cells this generator covers (positions or viewpoints)."""

    @abc.abstractmethod
    def plan(self, scene_cfg) -> list[DemoTask]:
        """Every episode of the dataset, in a fixed order (the order resume relies on)."""

    def generate(self, path: Path, ctx) -> dict:
        from pxp.experiment.data import DatasetError, DemoWriter, open_dataset
        from pxp.core.io import config_hash

        scene_cfg = ctx.scene_config(**self.cfg.scene_overrides())
        digest = config_hash(self.name, self.cfg, scene_cfg, "format", 1)
        path = Path(path)
        if path.exists():
            return self._existing(path, digest, open_dataset, DatasetError)
        recipe = getattr(getattr(ctx, "registry", None), "recipe", None)
        tasks = [replace(t, plugins=recipe) for t in self.plan(scene_cfg)]
        t0 = time.time()
        with DemoWriter(path, config_hash=digest, attrs=self._file_attrs(scene_cfg, digest, len(tasks), ctx),
                        compression_level=self.cfg.compression_level, log=ctx.log) as writer:
            done = writer.done()
            todo = [t for t in tasks if t.index not in done]
            if done:
                ctx.log(f"{path.name}: resuming, {len(done)} of {len(tasks)} episodes already written")
            errors = self._run(todo, writer, ctx, len(tasks) - len(todo), len(tasks))
            if errors:
                raise DatasetError(f"{len(errors)} of {len(tasks)} episodes raised an error (first: {errors[0]}); "
                                   f"the others are kept in {writer.partial.name}: rerun to retry the failed ones")
            writer.finish({"seconds": round(time.time() - t0, 2)}, masks=self.masks(scene_cfg, tasks))
        return self._summary(path, time.time() - t0, len(todo))

    def masks(self, scene_cfg, tasks) -> dict[str, list[int]]:
        """robomimic filter keys, one per half of the grid (``left``, ``right``, ``near``, ``far``): a policy
        with ``filter_key: left`` trains on this dataset's left-half demos only (one dataset, several splits)."""
        grid = self.grid(scene_cfg)
        halves = {half: set(split_cells(grid, half).tolist()) for half in FILTER_KEYS}
        return {half: [t.index for t in tasks if t.cell in cells] for half, cells in halves.items()}

    def verify(self, path: Path) -> str | None:
        """Why the finished file at ``path`` cannot be used (None if it can): the runner's cache check."""
        from pxp.experiment.data import DatasetError, open_dataset

        try:
            with open_dataset(path):
                return None
        except DatasetError as exc:
            return str(exc).split("; delete it")[0]

    def _run(self, todo, writer, ctx, already: int, total: int) -> list[str]:
        errors = []
        with ctx.progress(f"dataset {self.name}", total=total) as bar:
            bar.advance(already)
            for r in ctx.executor.run_tasks(run_episode, todo, workers=ctx.workers, progress=bar):
                if r.error:
                    errors.append(f"episode {r.task.index}: {r.error}")
                    ctx.log(f"episode {r.task.index} (cell {r.task.cell}) raised {r.error}")
                    continue
                writer.write(r.task.index, r.value, r.value["attrs"], success=r.value["success"])
        return errors

    def _existing(self, path, digest, open_dataset, DatasetError) -> dict:
        with open_dataset(path) as f:
            if f.attrs.get("config_hash") != digest:
                raise DatasetError(f"{path} holds another configuration (hash {f.attrs.get('config_hash')}, "
                                   f"now {digest}); delete it to regenerate")
        return self._summary(path, 0.0, 0)

    def _summary(self, path: Path, seconds: float, ran: int) -> dict:
        from pxp.experiment.data import open_dataset

        with open_dataset(path) as f:
            return {"path": str(path), "episodes": int(f.attrs["n_episodes"]), "demos": len(f.demos),
                    "failed": len(f.failed), "frames": int(f.attrs["n_frames"]), "ran": ran,
                    "seconds": round(seconds, 2)}

    def _file_attrs(self, scene_cfg, digest: str, n_planned: int, ctx=None) -> dict:
        import pxp
        from pxp.core.manifest import library_versions

        grid = self.grid(scene_cfg)
        return {"pxp_version": pxp.__version__, "generator": self.name,
                "generator_config": self.cfg.model_dump(mode="json"), "scene_config": scene_cfg.model_dump(mode="json"),
                "n_planned": n_planned, "grid_shape": (grid.rows, grid.cols), "image_key": scene_cfg.image_key,
                "libraries": library_versions(getattr(ctx, "registry", None))}

    def _extent(self, scene_cfg):
        if self.cfg.extent is not None:
            return self.cfg.extent
        return offset_extent_of(scene_cfg)

    def _check_offset(self, scene_cfg, offset) -> None:
        # Refuse a plan with an off-table offset now, not as one worker error per episode.
        check = getattr(scene_cfg, "check_offset", None)
        if check is not None:
            check(*offset)

    def _scene_key(self, scene_cfg) -> str:
        # the key evaluation rollouts use too (pxp.experiment.evaluation.run_episode): an in-process run
        # (workers=1) goes from generation to evaluation with the scene it already built
        return scene_cfg.model_dump_json()


def offset_extent_of(scene_cfg):
    """The scene's offset extent, from its config when it states one (no scene needed), else from a scene."""
    extent = scene_cfg.offset_extent()
    if extent is not None:
        return extent
    from pxp.core.plugins import create

    with create("scenes", scene_cfg) as scene:
        return scene.offset_extent


class PositionGridGenerator(GridGenerator):
    name = "position_grid"

    def grid(self, scene_cfg) -> Grid:
        return position_grid(self.cfg.rows, self.cfg.cols, self._extent(scene_cfg))

    def plan(self, scene_cfg) -> list[DemoTask]:
        grid, key, c = self.grid(scene_cfg), self._scene_key(scene_cfg), self.cfg
        view = c.view if c.view is not None else getattr(scene_cfg, "view", None)  # recorded as it is used
        tasks = []
        for cell in grid.select(c.split):
            (row, col), centre = grid.rowcol([cell])[0], grid.values([cell])[0]
            self._check_offset(scene_cfg, centre)
            for _ in range(c.episodes_per_cell):
                i = len(tasks)
                seed = episode_seed(c.seed, i)
                off = jittered(grid, centre, seed) if c.jitter else centre
                tasks.append(DemoTask(i, int(cell), int(row), int(col), (float(off[0]), float(off[1])),
                                      view, seed, scene_cfg, key))
        return tasks


def jittered(grid: Grid, centre, seed: int) -> np.ndarray:
    """A point drawn uniformly from the cell around ``centre`` (half a spacing each way, inside the grid's
    range), from the episode's own seed: cells tile the range, so a split's region keeps its boundary."""
    lo = np.array([grid.row_range[0], grid.col_range[0]], float)
    hi = np.array([grid.row_range[1], grid.col_range[1]], float)
    n = np.array([grid.rows, grid.cols])
    half = np.where(n > 1, (hi - lo) / np.maximum(n - 1, 1) / 2, 0.0)  # a single row/column has no spread
    a, b = np.maximum(centre - half, lo), np.minimum(centre + half, hi)
    return np.random.default_rng([seed, 2]).uniform(a, b)


class ViewpointGridGenerator(GridGenerator):
    name = "viewpoint_grid"

    def grid(self, scene_cfg) -> Grid:
        return viewpoint_grid(self.cfg.n_theta, self.cfg.n_phi, self.cfg.theta_max)

    def plan(self, scene_cfg) -> list[DemoTask]:
        grid, key, c = self.grid(scene_cfg), self._scene_key(scene_cfg), self.cfg
        (x0, x1), (y0, y1) = self._extent(scene_cfg)
        tasks = []
        for cell in grid.select(c.split):
            (row, col), view = grid.rowcol([cell])[0], grid.values([cell])[0]
            for _ in range(c.episodes_per_cell):
                i = len(tasks)
                seed = episode_seed(c.seed, i)
                # the position comes from the episode's own seed: reproducible, independent of the others
                dx, dy = np.random.default_rng([seed, 1]).uniform((x0, y0), (x1, y1))
                tasks.append(DemoTask(i, int(cell), int(row), int(col), (float(dx), float(dy)),
                                      (float(view[0]), float(view[1])), seed, scene_cfg, key))
        return tasks


@hookimpl
def pxp_register_datasets(register):
    register("position_grid", PositionGridConfig, PositionGridGenerator,
             summary="expert demos over a rows×cols grid of bowl+plate offsets, with named splits")
    register("viewpoint_grid", ViewpointGridConfig, ViewpointGridGenerator,
             summary="expert demos over nθ×nφ camera orbits, random positions per episode")
