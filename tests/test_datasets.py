"""The grid dataset generators, end to end with the real LIBERO scene (small: 2×2 cells at 64 px)."""
import contextlib
import shutil

import numpy as np
import pytest
import torch

from pxp.core.execution import LocalExecutor
from pxp.experiment.data import DatasetError, DemoDataset, open_dataset, partial_path
from pxp.experiment.grid import position_grid
from pxp.core.plugins import get_registry
from pxp.testing import check_light_import

# 64 px with the robot hidden renders about twice as fast; the images are still real renders.
SCENE = {"image_size": 64, "robot": "hidden"}


class Stop(Exception):
    """Stands in for a kill: raised from the progress bar after k episodes."""


class Ctx:
    """The slice of the runner's stage context a generator uses."""

    def __init__(self, workers=1, stop_after=None, **scene):
        self.registry, self.workers, self.seed = get_registry(), workers, 0
        self.executor = LocalExecutor()
        self.base = {**SCENE, **scene}
        self.logs, self.stop_after, self.advanced = [], stop_after, 0

    def scene_config(self, **overrides):
        model = self.registry.get("scenes", "libero_bowl_plate").config_model
        return model.model_validate({**self.base, **overrides})

    @contextlib.contextmanager
    def progress(self, description, total=None):
        ctx = self

        class Bar:
            def advance(self, n=1):
                ctx.advanced += n
                if ctx.stop_after is not None and ctx.advanced > ctx.stop_after:
                    raise Stop

        yield Bar()

    def log(self, msg):
        self.logs.append(msg)


def generator(**fields):
    reg = get_registry()
    comp = reg.get("datasets", fields.get("type", "position_grid"))
    return reg.create("datasets", comp.config_model.model_validate(fields))


# A small extent near the nominal placement keeps the expert's episodes short (~100 steps).
EXTENT = ((-0.10, 0.0), (-0.15, 0.0))
GRID = {"type": "position_grid", "rows": 2, "cols": 2, "seed": 5, "extent": EXTENT}


@pytest.fixture(scope="module")
def grid_dataset(tmp_path_factory):
    """A 2×2 position grid made by two worker processes (the parallel path)."""
    path = tmp_path_factory.mktemp("ds") / "grid.hdf5"
    summary = generator(**GRID).generate(path, Ctx(workers=2))
    return path, summary


def test_shapes_dtypes_and_attrs(grid_dataset):
    path, summary = grid_dataset
    assert summary["episodes"] == 4 and summary["demos"] + summary["failed"] == 4 and summary["demos"] >= 3
    with open_dataset(path, verify=True) as f:
        assert f.attrs["generator"] == "position_grid" and f.attrs["complete"]
        assert f.config("generator_config")["rows"] == 2 and f.config("scene_config")["image_size"] == 64
        grid = position_grid(2, 2, EXTENT)
        for i, d in enumerate(f.demos):
            T = d.length
            img = f.read(i, "obs/agentview_rgb")
            assert img.shape == (T, 64, 64, 3) and img.dtype == np.uint8 and img.std() > 5
            for key, shape in (("obs/eef_pos", (T, 3)), ("obs/eef_pixel", (T, 2)), ("obs/gripper", (T,)),
                               ("obs/bowl_pos", (T, 3)), ("actions", (T, 4))):
                arr = f.read(i, key)
                assert arr.shape == shape and arr.dtype == np.float64 and np.isfinite(arr).all(), key
            # every episode records its cell, seed, viewpoint and object positions
            assert np.allclose(d.attrs["offset"], grid.values([d.attrs["cell"]])[0])
            assert tuple(d.attrs["cell_rc"]) == tuple(grid.rowcol([d.attrs["cell"]])[0])
            assert np.allclose(d.attrs["viewpoint"], [0, 0]) and d.attrs["outcome"] == "PLACE"
            nominal_bowl = np.array([-0.065, 0.200]) + d.attrs["offset"]
            assert np.linalg.norm(d.attrs["bowl_init"][:2] - nominal_bowl) < 0.01
        assert sorted({d.attrs["seed"] for d in f.demos} | {e["seed"] for e in f.failed}).__len__() == 4
        # filter keys: each half of the 2×2 grid lists its demos (cells: row = dx, column = dy)
        assert f.filter_keys() == ["far", "left", "near", "right"]
        rc = {i: tuple(d.attrs["cell_rc"]) for i, d in enumerate(f.demos)}
        for key, (axis, side) in {"left": (1, 0), "right": (1, 1), "near": (0, 0), "far": (0, 1)}.items():
            assert f.filtered(key).tolist() == [i for i in rc if rc[i][axis] == side], key


def test_eef_pixel_is_the_projection_with_the_stored_camera(grid_dataset):
    path, _ = grid_dataset
    with open_dataset(path) as f:
        for i in range(len(f)):
            cam = f.camera(i)
            assert (cam.width, cam.height) == (64, 64)
            uv = f.read(i, "obs/eef_pixel")
            assert np.abs(cam.project(f.read(i, "obs/eef_pos")) - uv).max() < 1e-6
            assert ((uv > 0) & (uv < 64)).all()  # the gripper stays in view


def test_splits_plan_disjoint_cells_covering_the_grid():
    ctx = Ctx()
    cfg = ctx.scene_config()
    cells = {}
    for split in ("left", "not:left", "near", "far", "inner:2", "not:inner:2"):
        fields = {**GRID, "rows": 4, "cols": 4, "split": split, "episodes_per_cell": 2, "extent": None}
        plan = generator(**fields).plan(cfg)  # the scene's full workspace
        cells[split] = {t.cell for t in plan}
        assert len(plan) == 2 * len(cells[split]) and [t.index for t in plan] == list(range(len(plan)))
    for a, b in (("left", "not:left"), ("near", "far"), ("inner:2", "not:inner:2")):
        assert not cells[a] & cells[b] and cells[a] | cells[b] == set(range(16))


def test_resume_runs_every_episode_exactly_once(grid_dataset, tmp_path):
    path = tmp_path / "resumed.hdf5"
    with pytest.raises(Stop):  # "killed" after 2 episodes
        generator(**GRID).generate(path, Ctx(workers=1, stop_after=2))
    assert not path.exists() and partial_path(path).exists()
    with pytest.raises(DatasetError, match="not finished"):
        DemoDataset(path, horizon=2)
    ctx = Ctx(workers=1)
    summary = generator(**GRID).generate(path, ctx)
    assert summary["ran"] == 2 and summary["episodes"] == 4
    assert any("resuming, 2 of 4" in m for m in ctx.logs)
    with open_dataset(path) as f, open_dataset(grid_dataset[0]) as ref:
        episodes = [d.episode for d in f.demos] + [e["episode"] for e in f.failed]
        assert sorted(episodes) == [0, 1, 2, 3]
        # same config → the same episodes (cell, offset, seed), whatever the worker count or the
        # interruption. Not bit-identical trajectories: a reused LIBERO scene carries ~1e-6 of state
        # from its previous episode into the next reset, which grows to ~1 mm over an episode.
        ref_by_episode = {r.episode: r for r in ref.demos}
        for i, d in enumerate(f.demos):
            r = ref_by_episode[d.episode]
            for key in ("seed", "cell", "offset", "outcome"):
                assert np.all(d.attrs[key] == r.attrs[key]), key
            j = ref.demos.index(r)
            assert np.allclose(f.read(i, "obs/eef_pos", 0), ref.read(j, "obs/eef_pos", 0), atol=1e-4)
    # a finished dataset is not generated again
    again = generator(**GRID).generate(path, Ctx(workers=1, stop_after=0))
    assert again["ran"] == 0 and again["episodes"] == 4
    with pytest.raises(DatasetError, match="another configuration"):
        generator(**{**GRID, "seed": 6}).generate(path, Ctx())


def test_truncated_dataset_is_refused(grid_dataset, tmp_path):
    path = tmp_path / "cut.hdf5"
    shutil.copy(grid_dataset[0], path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        DemoDataset(path, horizon=4)
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        generator(**GRID).generate(path, Ctx())  # never silently "cached"


def test_loader_on_real_demos(grid_dataset):
    path, _ = grid_dataset
    a = DemoDataset(path, horizon=4, stride=3, count=2, seed=1)
    b = DemoDataset(path, horizon=4, stride=3, count=2, seed=1)
    assert [d.episode for d in a.demos] == [d.episode for d in b.demos]
    batch = next(iter(torch.utils.data.DataLoader(a, batch_size=8, shuffle=True)))
    assert batch["image"].shape == (8, 3, 64, 64) and batch["target_pos"].shape == (8, 4, 3)
    assert set(batch["target_gripper"].unique().tolist()) <= {0.0, 1.0}
    # targets are pixels of the image the model sees
    K, E = batch["K"][0].double().numpy(), batch["extrinsics"][0].double().numpy()
    from pxp.core.camera import Camera

    uv = Camera(K, E, 64, 64).project(batch["target_pos"][0].double().numpy())
    assert np.abs(uv - batch["target_pixel"][0].numpy()).max() < 1e-3


def test_viewpoint_grid_with_circle_overlay(tmp_path):
    path = tmp_path / "views.hdf5"
    cfg = {"type": "viewpoint_grid", "n_theta": 2, "n_phi": 1, "theta_max": 20, "circle_overlay": True,
           "scene": {"robot_noise": 0.0}}
    summary = generator(**cfg).generate(path, Ctx(workers=1))
    assert summary["episodes"] == 2
    with open_dataset(path) as f:
        views = {tuple(np.round(d.attrs["viewpoint"], 6)) for d in f.demos} | \
                {tuple(np.round(e["viewpoint"], 6)) for e in f.failed}
        assert views == {(0.0, 0.0), (20.0, 0.0)}
        assert f.config("scene_config")["robot"] == "circle"
        cams = [f.camera(i) for i in range(len(f))]
        for i, cam in enumerate(cams):
            uv = f.read(i, "obs/eef_pixel")
            assert np.abs(cam.project(f.read(i, "obs/eef_pos")) - uv).max() < 1e-6
            img = f.read(i, "obs/agentview_rgb", 0)
            u, v = np.floor(uv[0]).astype(int)
            assert tuple(img[v, u]) == (255, 140, 0)  # the disc stands in for the hidden robot
        offsets = [tuple(d.attrs["offset"]) for d in f.demos]
        assert len(set(offsets)) == len(offsets)  # positions drawn per episode
    if len(cams) == 2:
        assert not np.allclose(cams[0].extrinsics, cams[1].extrinsics)


def test_failed_expert_episodes_are_counted_not_kept(tmp_path):
    path = tmp_path / "fail.hdf5"
    # one control step per waypoint: the expert cannot reach the bowl
    summary = generator(**{**GRID, "rows": 1, "cols": 2, "scene": {"servo_max_steps": 1}}).generate(path, Ctx())
    assert summary == {**summary, "episodes": 2, "demos": 0, "failed": 2}
    with open_dataset(path) as f:
        assert len(f) == 0 and {e["outcome"] for e in f.failed} == {"MISS"}
    with pytest.raises(DatasetError):
        DemoDataset(path, horizon=2, count=1)


def test_config_errors():
    with pytest.raises(ValueError):
        generator(**{**GRID, "bogus": 1})
    with pytest.raises(ValueError, match="both directly and in scene"):
        generator(**{**GRID, "image_size": 64, "scene": {"image_size": 128}}).generate(None, Ctx())
    with pytest.raises(ValueError, match="off the table"):
        generator(**{**GRID, "extent": ((-0.9, 0.0), (0.0, 0.1))}).plan(Ctx().scene_config())


@pytest.mark.parametrize("module", ["pxp.plugins.datasets.grids", "pxp.experiment.data", "pxp.core.execution", "pxp.experiment.grid"])
def test_imports_stay_light(module):
    check_light_import(module)


def test_jittered_offsets_stay_in_their_cell_and_on_their_side_of_the_split():
    """``jitter: true`` draws each episode's offset inside its cell (half a spacing each way, clipped to
    the workspace), reproducibly from the episode seed, so the left half's offsets never cross the midline."""
    cfg = Ctx().scene_config()
    fields = {**GRID, "rows": 4, "cols": 4, "split": "left", "episodes_per_cell": 3, "extent": None}
    centred = generator(**fields).plan(cfg)
    plan = generator(**fields, jitter=True).plan(cfg)
    again = generator(**fields, jitter=True).plan(cfg)
    assert [t.offset for t in plan] == [t.offset for t in again]
    grid = position_grid(4, 4, (tuple(cfg.workspace_dx), tuple(cfg.workspace_dy)))
    half = np.array([np.diff(grid.row_values)[0], np.diff(grid.col_values)[0]]) / 2
    mid_dy = (grid.col_values[1] + grid.col_values[2]) / 2
    offsets = np.array([t.offset for t in plan])
    centres = np.array([t.offset for t in centred])
    assert (np.abs(offsets - centres) <= half + 1e-12).all()
    assert (offsets[:, 1] <= mid_dy).all() and (offsets[:, 1] >= grid.col_range[0]).all()
    assert (offsets[:, 0] >= grid.row_range[0]).all() and (offsets[:, 0] <= grid.row_range[1]).all()
    assert len({t.offset for t in plan}) == len(plan)  # continuous: no two episodes share a position
