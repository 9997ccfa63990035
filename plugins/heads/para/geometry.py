"""PARA geometry: world target ↔ (heatmap cell, height bin), through the scene camera.

Encode: a world target → (heatmap cell, height bin) via ``Camera.project``; decode: argmax cell's
centre → ``Camera.unproject`` onto the plane z = the bin's centre height. numpy only (torch tensors
are accepted where noted), so reports and tests use it without the model.
"""
from __future__ import annotations

import numpy as np

from pxp.core.camera import Camera
from pxp.plugins.heads.para.config import ParaVolumeConfig


def height_bin_index(z, n_bins: int, z_range: tuple[float, float]):
    """Index of the height bin holding ``z`` (numpy or torch): ``n_bins`` equal bins over
    ``[z_min, z_max]``; heights outside the range go to the first / last bin.

    The one definition of the bin layout: training targets and decoding share it.
    """
    z0, z1 = float(z_range[0]), float(z_range[1])
    if n_bins < 1 or not z1 > z0:
        raise ValueError(f"need n_bins >= 1 and z_max > z_min, got {n_bins}, {z_range}")
    if hasattr(z, "floor") and not isinstance(z, np.ndarray):  # a torch tensor: stay on its device
        return ((z - z0) * (n_bins / (z1 - z0))).floor().long().clamp(0, n_bins - 1)
    idx = np.floor((np.asarray(z, dtype=np.float64) - z0) * (n_bins / (z1 - z0)))
    return np.clip(idx, 0, n_bins - 1).astype(np.int64)


def height_bin_centers(n_bins: int, z_range: tuple[float, float]) -> np.ndarray:
    """The height each bin stands for (its centre); inverse of :func:`height_bin_index` up to binning."""
    z0, z1 = float(z_range[0]), float(z_range[1])
    return z0 + (np.arange(n_bins) + 0.5) * (z1 - z0) / n_bins


def encode(target_xyz, camera: Camera, cfg: ParaVolumeConfig):
    """World targets (..., 3) → (cells (..., 2) int [row, col] in the heatmap, height bins (...,) int)."""
    xyz = np.asarray(target_xyz, dtype=float)
    n = cfg.heatmap_size
    uv = camera.scaled(n, n).project(xyz)  # heatmap pixel coordinates: cell [r, c] spans [c, c+1) × [r, r+1)
    cells = np.clip(np.floor(uv[..., ::-1]), 0, n - 1).astype(np.int64)
    return cells, height_bin_index(xyz[..., 2], cfg.height_bins, cfg.height_range)


def cell_to_pixel(cells, camera: Camera, cfg: ParaVolumeConfig) -> np.ndarray:
    """Heatmap cells (..., 2) [row, col] → image pixel (u, v) of the cell centre."""
    c = np.asarray(cells, dtype=float)
    scale = np.array([camera.width / cfg.heatmap_size, camera.height / cfg.heatmap_size])
    return (c[..., ::-1] + 0.5) * scale


def decode_cells(cells, bins, camera: Camera, cfg: ParaVolumeConfig) -> np.ndarray:
    """(cell, bin) → world xyz: the cell centre's ray meets the plane z = bin centre height.
    Fractional cells and bins (sub-cell decoding) interpolate between centres."""
    centers = height_bin_centers(cfg.height_bins, cfg.height_range)
    z = np.interp(np.asarray(bins, dtype=float), np.arange(cfg.height_bins), centers)
    return camera.unproject(cell_to_pixel(cells, camera, cfg), z)


def peaks(volume: np.ndarray, subcell: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Logits (..., N, h, w) → (cells (..., 2) [row, col], bins (...)) at the joint argmax; integers, or
    with ``subcell`` the softmax-weighted mean over the peak's 3×3 cells (height marginalised) and over
    its ±1 bins (at the peak cell) — a local mean, so a second mode elsewhere cannot pull it away."""
    a = np.asarray(volume, dtype=np.float64)
    *lead, N, h, w = a.shape
    cells, bins = unravel_peak(a.reshape(*lead, -1).argmax(axis=-1), h, w)
    if not subcell:
        return cells, bins
    rows, cols = cells[..., 0], cells[..., 1]
    rem = rows * w + cols
    marginal = np.logaddexp.reduce(a, axis=-3)  # (..., h, w)
    r_idx, c_idx = np.arange(h), np.arange(w)
    near = ((np.abs(r_idx[:, None] - rows[..., None, None]) <= 1)
            & (np.abs(c_idx[None, :] - cols[..., None, None]) <= 1))
    wts = _local_softmax(marginal, near, axes=(-2, -1))
    r = (wts * r_idx[:, None]).sum(axis=(-2, -1))
    c = (wts * c_idx[None, :]).sum(axis=(-2, -1))
    column = np.take_along_axis(a.reshape(*lead, N, h * w), rem[..., None, None], axis=-1)[..., 0]  # (..., N)
    k = np.arange(N)
    wb = _local_softmax(column, np.abs(k - bins[..., None]) <= 1, axes=(-1,))
    return np.stack([r, c], axis=-1), (wb * k).sum(axis=-1)


def unravel_peak(flat, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat argmax over a (N, h, w) volume (bin · h·w + row · w + col) → (cells (..., 2) [row, col], bins)."""
    bins, rem = np.divmod(np.asarray(flat), h * w)
    return np.stack(np.divmod(rem, w), axis=-1), bins


def _local_softmax(x: np.ndarray, mask: np.ndarray, axes: tuple) -> np.ndarray:
    x = np.where(mask, x, -np.inf)
    e = np.exp(x - x.max(axis=axes, keepdims=True))
    return e / e.sum(axis=axes, keepdims=True)


def decode(logits, camera: Camera, cfg: ParaVolumeConfig):
    """Logits (T, N, h, w) (numpy or torch) → (xyz (T, 3), pixel (T, 2), cells, bins) at the peak."""
    a = logits.detach().float().cpu().numpy() if hasattr(logits, "detach") else np.asarray(logits)
    cells, bins = peaks(a, cfg.subcell)
    return decode_cells(cells, bins, camera, cfg), cell_to_pixel(cells, camera, cfg), cells, bins