"""Grid cells and named splits: each split and its complement partition the grid, deterministically."""
import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from pxp.experiment.grid import Grid, SplitConfig, position_grid, split_cells, viewpoint_grid

SPLITS = ["all", "left", "right", "near", "far", "inner:2", "inner:3", "random:5", "random:5:9",
          "corners:4", "corners:8", "rows:0", "cols:1,3", "cells:0,7", "cells:1/2,3/4"]


@pytest.mark.parametrize("shape", [(2, 2), (5, 6), (16, 16)])
@pytest.mark.parametrize("split", SPLITS)
def test_split_and_complement_partition_the_grid(shape, split):
    grid = position_grid(*shape, ((-0.32, 0.07), (-0.50, 0.10)))
    try:
        inside = split_cells(grid, split)
    except ValueError as exc:  # a split too big for a small grid is refused, not truncated
        assert "grid" in str(exc) or "outside" in str(exc)
        return
    outside = split_cells(grid, "not:" + split)
    assert len(np.intersect1d(inside, outside)) == 0
    assert np.array_equal(np.union1d(inside, outside), np.arange(grid.n))
    assert np.array_equal(inside, np.sort(inside)) and len(np.unique(inside)) == len(inside)
    # the same split always gives the same cells
    assert np.array_equal(inside, split_cells(grid, SplitConfig.model_validate(split)))


def test_values_and_directions():
    grid = position_grid(2, 3, ((-0.3, 0.1), (-0.5, 0.1)))
    assert np.allclose(grid.row_values, [-0.3, 0.1]) and np.allclose(grid.col_values, [-0.5, -0.2, 0.1])
    v = grid.values()
    assert v.shape == (6, 2) and np.allclose(v[5], [0.1, 0.1]) and np.allclose(v[1], [-0.3, -0.2])
    # left = smaller dy (world -y, image left), near = smaller dx (towards the robot base)
    assert np.all(grid.values(grid.select("left"))[:, 1] < -0.2 + 1e-9)
    assert np.all(grid.values(grid.select("right"))[:, 1] > -0.2 - 1e-9)
    assert np.all(grid.values(grid.select("near"))[:, 0] == -0.3)
    assert np.all(grid.values(grid.select("far"))[:, 0] == 0.1)
    # odd column count: the middle column is in neither half, mirrors stay the same size
    assert len(grid.select("left")) == len(grid.select("right")) == 2
    assert set(grid.rowcol(grid.select("not:left"))[:, 1]) == {1, 2}


def test_named_splits_on_a_4x4():
    grid = position_grid(4, 4, ((0, 1), (0, 1)))
    assert list(grid.select("inner:2")) == [5, 6, 9, 10]
    assert list(grid.select("corners:4")) == [0, 3, 12, 15]
    assert list(grid.select("corners:12")) == [0, 1, 2, 3, 4, 7, 8, 11, 12, 13, 14, 15]
    assert list(grid.select("rows:0")) == [0, 1, 2, 3]
    assert list(grid.select("cols:0")) == [0, 4, 8, 12]
    assert list(grid.select({"name": "cells", "cells": [[1, 1], 0]})) == [0, 5]
    assert list(grid.select("not:not:left")) == list(grid.select("left"))


def test_random_is_seeded():
    grid = position_grid(16, 16, ((0, 1), (0, 1)))
    a, b = grid.select("random:20"), grid.select({"name": "random", "n": 20, "seed": 0})
    assert np.array_equal(a, b) and len(a) == 20
    assert not np.array_equal(a, grid.select("random:20:1"))


def test_viewpoint_grid():
    grid = viewpoint_grid(8, 8)
    assert np.allclose(grid.row_values[[0, -1]], [0, 25])
    assert np.allclose(grid.col_values, np.arange(8) * 45.0)  # 360 is not repeated
    theta0 = grid.values(grid.select("rows:0"))
    assert theta0.shape == (8, 2) and np.all(theta0[:, 0] == 0)


def test_config_forms_and_errors():
    class Holder(BaseModel):
        split: SplitConfig = SplitConfig()

    assert Holder().split.name == "all"
    assert Holder(split="left").split == SplitConfig(name="left")
    assert Holder(split={"name": "left", "complement": True}).split == SplitConfig.model_validate("not:left")
    assert str(SplitConfig.model_validate("not:random:20:7")) == "not:random:20:7"
    for bad in ["inner", "random:x", "sideways", "left:3", {"name": "left", "k": 2}, {"name": "cells"}, {"name": "all", "bogus": 1}]:
        with pytest.raises(ValidationError):
            SplitConfig.model_validate(bad)
    grid = position_grid(2, 2, ((0, 1), (0, 1)))
    for bad in ["inner:3", "random:5", "rows:2", "cells:4", "cells:2/0"]:
        with pytest.raises(ValueError):
            grid.select(bad)
    # a SplitConfig round-trips through JSON (configs are hashed and stored as JSON)
    s = SplitConfig.model_validate("cells:1/0,3")
    assert SplitConfig.model_validate_json(s.model_dump_json()) == s
    with pytest.raises(ValueError):
        Grid(0, 2, (0, 1), (0, 1))
