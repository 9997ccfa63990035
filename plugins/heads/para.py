"""PARA: pixel-aligned action head. Logits over a (pixel × height bin) volume for T future steps.

Encode: a world target → (heatmap cell, height bin) via ``Camera.project``; decode: argmax cell's
centre → ``Camera.unproject`` onto the plane z = the bin's centre height. Gripper commands are read
from the per-pixel features at the target pixel (ground truth when training, argmax at inference).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pxp.core.camera import Camera
from pxp.core.hookspecs import hookimpl
from pxp.experiment.policy import height_bin_centers, height_bin_index


class ParaVolumeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["para_volume"] = "para_volume"
    horizon: int = Field(4, gt=0, description="T future steps predicted")
    height_bins: int = Field(32, gt=0, description="N; 1 = a 2D heatmap (point-track pretraining)")
    height_range: tuple[float, float] = Field((0.88, 1.20), description="(z_min, z_max) world metres covered by the bins")
    heatmap_size: int = Field(64, gt=0, description="heatmap resolution (square, covers the whole image)")
    hidden_dim: int = Field(128, gt=0)
    conv_layers: int = Field(2, ge=0, description="3x3 conv + GELU layers after upsampling")
    condition_on_eef: bool = Field(True, description="add a learned embedding at the end-effector's patch")
    condition_on_gripper: bool = Field(True, description="add the current gripper state as a learned embedding")

    def smoke(self) -> dict:
        return {"height_bins": min(self.height_bins, 4), "heatmap_size": min(self.heatmap_size, 16),
                "hidden_dim": min(self.hidden_dim, 32)}

    @model_validator(mode="after")
    def _range_ordered(self):
        if not self.height_range[0] < self.height_range[1]:
            raise ValueError(f"height_range must be (z_min, z_max) with z_min < z_max, got {self.height_range}")
        return self


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


def make_para_head(config: ParaVolumeConfig, backbone):
    """``factory(config, backbone)``: the head reads ``backbone.embed_dim``."""
    from pxp.plugins.heads import _para_impl

    return _para_impl.ParaHead(config, int(backbone.embed_dim))


@hookimpl
def pxp_register_heads(register):
    register("para_volume", ParaVolumeConfig, make_para_head,
             summary="PARA: pixel × height-bin logits volume, unprojected with the scene camera")
