"""Grids of cells and the named splits that declare train and test sets (pure numpy + pydantic).

A :class:`Grid` has ``rows × cols`` cells; cell ``(r, c)`` has flat index ``r * cols + c`` and the
value ``(row_values[r], col_values[c])``.

Position grid (:func:`position_grid`): rows run along world **x** (``dx``), columns along world
**y** (``dy``); the values are the (dx, dy) offsets a scene applies to its objects together, spaced
evenly over the extent ``((dx_min, dx_max), (dy_min, dy_max))`` with both ends included.

Direction words are defined by what a person sees in the built-in scene's default camera image,
where the camera sits at x ≈ +0.66 looking back at the robot (base at x ≈ −0.66), so world +y points
to the image's right (checked from that scene's camera pose: the camera's x axis is world +y):

- ``left``  = the half of the columns with the smaller dy: world −y, the image's left half
  (the robot's right-hand side);  ``right`` = the larger dy (world +y).
- ``near``  = the half of the rows with the smaller dx: nearer the robot base (the top of the
  image, away from the camera);  ``far`` = the larger dx.
- With an odd count the middle column (row) belongs to neither half, so ``left`` and ``right``
  mirror each other; it lies in both complements.

Viewpoint grid (:func:`viewpoint_grid`): rows are θ (tilt from the default view, 0..θ_max, both
ends included), columns φ (around the axis, 0..360° with 360 left out since it equals 0), so
``rows:0`` is "θ = 0 only" — the default camera — and ``near``/``far`` are small/large tilts.

Splits (:class:`SplitConfig`), usable as a field of another config, as a dict or a short string:

==========================  ====================================================================
``all``                     every cell
``left`` / ``right``        column halves (see above)
``near`` / ``far``          row halves (see above)
``inner:K``                 the centred K×K square (needs K ≤ rows, cols)
``random:N`` / ``random:N:SEED``  N cells drawn without replacement with numpy's PCG64(SEED), seed 0 by default
``corners:N``               the N cells closest to the grid's corners (N=4: the four corner cells;
                            ties broken by corner, then row, then column)
``rows:0,1`` / ``cols:3``   whole rows / columns by index
``cells:0,5,7``             explicit flat cell indices (dict form also takes ``[[r, c], ...]``)
``not:<split>``             the complement of any split, e.g. ``not:left``, ``not:random:20``
==========================  ====================================================================

Dict form: ``{name: random, n: 20, seed: 3}``, ``{name: inner, k: 4}``,
``{name: left, complement: true}``, ``{name: cells, cells: [[0, 1], [2, 3]]}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pxp.core.smoke import DATASET_SHAPES, GRID_SIDE, SPLIT_CELLS

__all__ = ["Grid", "position_grid", "viewpoint_grid", "SplitConfig", "split_cells", "check_grid_split", "explicit"]


@dataclass(frozen=True)
class Grid:
    rows: int
    cols: int
    row_range: tuple[float, float]
    col_range: tuple[float, float]
    row_endpoint: bool = True  # include row_range[1] as the last value
    col_endpoint: bool = True

    def __post_init__(self):
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"a grid needs at least 1×1 cells, got {self.rows}×{self.cols}")

    @property
    def n(self) -> int:
        return self.rows * self.cols

    @property
    def row_values(self) -> np.ndarray:
        return _axis(self.row_range, self.rows, self.row_endpoint)

    @property
    def col_values(self) -> np.ndarray:
        return _axis(self.col_range, self.cols, self.col_endpoint)

    def rowcol(self, cells) -> np.ndarray:
        """Flat indices (N,) → (N, 2) integer (row, col)."""
        cells = np.asarray(cells, dtype=np.int64)
        return np.stack([cells // self.cols, cells % self.cols], axis=-1)

    def index(self, row, col) -> np.ndarray:
        return np.asarray(row, dtype=np.int64) * self.cols + np.asarray(col, dtype=np.int64)

    def values(self, cells=None) -> np.ndarray:
        """(N, 2) cell values (row value, col value); all cells in flat order when ``cells`` is None."""
        cells = np.arange(self.n) if cells is None else np.asarray(cells, dtype=np.int64)
        rc = self.rowcol(cells)
        return np.stack([self.row_values[rc[:, 0]], self.col_values[rc[:, 1]]], axis=-1)

    def select(self, split) -> np.ndarray:
        """Sorted flat indices of the cells in ``split`` (a :class:`SplitConfig`, dict or string)."""
        return split_cells(self, split)


def _axis(rng, n, endpoint) -> np.ndarray:
    lo, hi = float(rng[0]), float(rng[1])
    if n == 1:
        return np.array([(lo + hi) / 2 if endpoint else lo])
    return np.linspace(lo, hi, n, endpoint=endpoint)


def position_grid(rows: int, cols: int, extent) -> Grid:
    """Object offsets: rows along dx, columns along dy over ``((dx_min, dx_max), (dy_min, dy_max))``."""
    (x0, x1), (y0, y1) = extent
    return Grid(rows, cols, (x0, x1), (y0, y1))


def viewpoint_grid(n_theta: int, n_phi: int, theta_max: float = 25.0) -> Grid:
    """Viewpoints in degrees: rows θ ∈ [0, θ_max] (both ends), columns φ ∈ [0, 360) (360 left out)."""
    return Grid(n_theta, n_phi, (0.0, float(theta_max)), (0.0, 360.0), col_endpoint=False)


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------
SplitName = Literal["all", "left", "right", "near", "far", "inner", "random", "corners", "rows", "cols", "cells"]
_NEEDS = {"inner": "k", "random": "n", "corners": "n", "rows": "indices", "cols": "indices", "cells": "cells"}


class SplitConfig(BaseModel):
    """A named subset of a grid's cells; ``complement`` takes every other cell instead."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: SplitName = "all"
    k: Optional[int] = Field(None, ge=1, description="side of the inner square")
    n: Optional[int] = Field(None, ge=1, description="cell count for random / corners")
    seed: int = 0
    indices: Optional[list[int]] = Field(None, description="row or column indices for rows / cols")
    cells: Optional[list[Union[int, tuple[int, int]]]] = Field(None, description="flat indices or [row, col]")
    complement: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value):
        return parse_split(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_params(self):
        need = _NEEDS.get(self.name)
        if need and getattr(self, need) is None:
            raise ValueError(f"split '{self.name}' needs '{need}' (e.g. '{_EXAMPLES[self.name]}')")
        extra = [f for f in ("k", "n", "indices", "cells") if f != need and getattr(self, f) is not None]
        if extra:
            raise ValueError(f"split '{self.name}' takes no {', '.join(extra)}")
        return self

    def __str__(self) -> str:
        return ("not:" if self.complement else "") + _short(self)


_EXAMPLES = {"inner": "inner:4", "random": "random:20", "corners": "corners:4", "rows": "rows:0",
             "cols": "cols:0,1", "cells": "cells:0,5"}


def _short(s: SplitConfig) -> str:
    if s.name == "inner":
        return f"inner:{s.k}"
    if s.name == "random":
        return f"random:{s.n}" + (f":{s.seed}" if s.seed else "")
    if s.name == "corners":
        return f"corners:{s.n}"
    if s.name in ("rows", "cols"):
        return f"{s.name}:" + ",".join(map(str, s.indices))
    if s.name == "cells":
        return "cells:" + ",".join(str(c) if isinstance(c, int) else f"{c[0]}/{c[1]}" for c in s.cells)
    return s.name


def parse_split(text: str) -> dict:
    """The short string form → the dict form (see the module docstring)."""
    text = text.strip()
    complement = False
    while text.startswith("not:"):
        complement, text = not complement, text[4:].strip()
    name, _, arg = text.partition(":")
    out: dict = {"name": name.strip(), "complement": complement}
    args = [a.strip() for a in arg.split(":")] if arg else []
    try:
        if name == "inner" and len(args) == 1:
            out["k"] = int(args[0])
        elif name in ("random", "corners") and len(args) in (1, 2) and not (name == "corners" and len(args) == 2):
            out["n"] = int(args[0])
            if len(args) == 2:
                out["seed"] = int(args[1])
        elif name in ("rows", "cols") and len(args) == 1:
            out["indices"] = [int(a) for a in args[0].split(",")]
        elif name == "cells" and len(args) == 1:
            out["cells"] = [_cell(a) for a in args[0].split(",")]
        elif args:
            raise ValueError
    except ValueError:
        raise ValueError(f"cannot read split '{text}'; examples: left, not:left, inner:4, random:20, "
                         f"random:20:7, corners:4, rows:0, cols:0,1, cells:0,5 (or cells:0/1,2/3 as row/col)") from None
    return out


def _cell(a: str):
    if "/" in a:
        r, c = a.split("/")
        return (int(r), int(c))
    return int(a)


def split_cells(grid: Grid, split) -> np.ndarray:
    """Sorted flat indices of ``split``'s cells in ``grid``."""
    split = split if isinstance(split, SplitConfig) else SplitConfig.model_validate(split)
    mask = np.zeros(grid.n, dtype=bool)
    mask[_select(grid, split)] = True
    if split.complement:
        mask = ~mask
    return np.flatnonzero(mask)


def _select(grid: Grid, s: SplitConfig) -> np.ndarray:
    rc = grid.rowcol(np.arange(grid.n))
    r, c = rc[:, 0], rc[:, 1]
    if s.name == "all":
        return np.arange(grid.n)
    if s.name == "left":
        return np.flatnonzero(c < grid.cols // 2)
    if s.name == "right":
        return np.flatnonzero(c >= grid.cols - grid.cols // 2)
    if s.name == "near":
        return np.flatnonzero(r < grid.rows // 2)
    if s.name == "far":
        return np.flatnonzero(r >= grid.rows - grid.rows // 2)
    if s.name == "inner":
        return _inner(grid, s.k, r, c)
    if s.name == "random":
        _check_count(grid, s.n, "random")
        return np.random.default_rng(s.seed).choice(grid.n, size=s.n, replace=False)
    if s.name == "corners":
        return _corners(grid, s.n, r, c)
    if s.name in ("rows", "cols"):
        size = grid.rows if s.name == "rows" else grid.cols
        _check_indices(s.indices, size, s.name)
        return np.flatnonzero(np.isin(r if s.name == "rows" else c, s.indices))
    return _explicit(grid, s.cells)


def _inner(grid, k, r, c) -> np.ndarray:
    if k > grid.rows or k > grid.cols:
        raise ValueError(f"inner:{k} does not fit a {grid.rows}×{grid.cols} grid")
    r0, c0 = (grid.rows - k) // 2, (grid.cols - k) // 2
    return np.flatnonzero((r >= r0) & (r < r0 + k) & (c >= c0) & (c < c0 + k))


def _corners(grid, n, r, c) -> np.ndarray:
    _check_count(grid, n, "corners")
    corners = np.array([[0, 0], [0, grid.cols - 1], [grid.rows - 1, 0], [grid.rows - 1, grid.cols - 1]])
    d = np.hypot(r[:, None] - corners[None, :, 0], c[:, None] - corners[None, :, 1])
    nearest = d.argmin(axis=1)
    order = np.lexsort((c, r, nearest, d.min(axis=1)))  # last key is the primary one
    return order[:n]


def _explicit(grid, cells) -> np.ndarray:
    out = []
    for cell in cells:
        if isinstance(cell, int):
            ok, idx = 0 <= cell < grid.n, cell
        else:
            ok, idx = 0 <= cell[0] < grid.rows and 0 <= cell[1] < grid.cols, cell[0] * grid.cols + cell[1]
        if not ok:
            raise ValueError(f"cell {cell} is outside the {grid.rows}×{grid.cols} grid")
        out.append(idx)
    return np.asarray(out, dtype=np.int64)


def _check_count(grid, n, name) -> None:
    if n > grid.n:
        raise ValueError(f"{name}:{n} asks for more cells than the {grid.rows}×{grid.cols} grid has")


def _check_indices(indices, size, name) -> None:
    bad = [i for i in indices if not 0 <= i < size]
    if bad:
        raise ValueError(f"{name} {bad} outside 0..{size - 1}")


def check_grid_split(shape, split, field: str = "split", grid_field: str = "grid", count: int | None = None,
                     count_field: str = "positions") -> int:
    """For config validators: raise :class:`~pxp.core.errors.FieldError` naming the field when ``shape``
    (rows, cols) is not a grid, ``split`` does not fit it or selects no cell, or ``count`` cells are asked
    of a split that has fewer. Returns the split's cell count."""
    from pxp.core.errors import FieldError

    rows, cols = (int(v) for v in shape)
    if rows < 1 or cols < 1:
        raise FieldError(grid_field, f"a grid needs at least 1×1 cells, got {rows}×{cols}")
    grid = Grid(rows, cols, (0.0, 1.0), (0.0, 1.0))
    try:
        n = len(split_cells(grid, split))
    except ValueError as exc:
        raise FieldError(field, str(exc)) from None
    if n == 0:
        raise FieldError(field, f"'{split}' selects no cell of the {rows}×{cols} grid")
    if count is not None and count > n:
        raise FieldError(count_field, f"{count} asked for, but '{split}' has only {n} cell(s) of the "
                                      f"{rows}×{cols} grid (use {n} or fewer, or null for all of them)")
    return n


def explicit(config, field: str):
    """The field's value when the spec set it, else None: a default (positions: 20) that exceeds a small
    split just means "all of it", while a number the user wrote must fit."""
    return getattr(config, field) if field in config.model_fields_set else None


# ---------------------------------------------------------------- at smoke scale (pxp run --smoke)

def shrink_split(split: Any, rows: int, cols: int) -> Any:
    """A split that names the same cells' kind on a rows × cols grid and is not empty there."""
    try:
        s = SplitConfig.model_validate(split)
    except ValidationError:
        return split  # validation reports it, with its path
    fit = {}
    if s.name in ("random", "corners"):
        fit["n"] = min(s.n, SPLIT_CELLS, rows * cols)
    elif s.name == "inner":
        fit["k"] = min(s.k, rows, cols)
    elif s.name in ("rows", "cols"):
        size = rows if s.name == "rows" else cols
        fit["indices"] = sorted({min(i, size - 1) for i in s.indices})
    elif s.name == "cells":
        fit["cells"] = [c if isinstance(c, int) and c < rows * cols else
                        ((min(c[0], rows - 1), min(c[1], cols - 1)) if not isinstance(c, int) else rows * cols - 1)
                        for c in s.cells]
    return str(SplitConfig(**{**s.model_dump(), **fit}))


def smallest_grid(split: Any, rows: int, cols: int, make_grid, shapes=DATASET_SHAPES) -> tuple[int, int, Any]:
    """(rows, cols, split) for the smallest of :data:`DATASET_SHAPES` (within rows × cols) where the shrunk
    ``split`` still has cells; ``make_grid(rows, cols)`` builds the plugin's grid to count them."""
    for r, c in shapes:
        r, c = min(r, rows), min(c, cols)
        shrunk = shrink_split(split, r, c)
        try:
            if len(make_grid(r, c).select(shrunk)):
                return r, c, shrunk
        except ValueError:
            continue
    r, c = min(GRID_SIDE, rows), min(GRID_SIDE, cols)
    return r, c, shrink_split(split, r, c)
