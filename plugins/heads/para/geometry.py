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
    """(cell, bin) → world xyz: the cell centre's ray meets the plane z = bin centre height."""
    z = height_bin_centers(cfg.height_bins, cfg.height_range)[np.asarray(bins)]
    return camera.unproject(cell_to_pixel(cells, camera, cfg), z)


def decode(logits, camera: Camera, cfg: ParaVolumeConfig):
    """Logits (T, N, h, w) (numpy or torch) → (xyz (T, 3), pixel (T, 2), cells, bins) at the argmax."""
    a = logits.detach().float().cpu().numpy() if hasattr(logits, "detach") else np.asarray(logits)
    T, N, h, w = a.shape
    flat = a.reshape(T, -1).argmax(axis=1)
    bins, rem = np.divmod(flat, h * w)
    cells = np.stack(np.divmod(rem, w), axis=-1)
    return decode_cells(cells, bins, camera, cfg), cell_to_pixel(cells, camera, cfg), cells, bins
