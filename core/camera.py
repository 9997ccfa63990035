"""Pinhole camera geometry: the single source of truth for pixels ↔ world.

Conventions (tested against MuJoCo renders):
- World→camera extrinsics in the OpenCV convention: x right, y down, z forward.
- Pixel coordinates are continuous: (u, v) = (column, row) measured from the image's
  top-left corner, so the centre of pixel [row j, col i] is (i + 0.5, j + 0.5).
  Images are top-row-first, exactly as the policies see them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MuJoCo cameras look along -z with +y up; OpenCV looks along +z with +y down.
_MJ_TO_CV = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class Camera:
    K: np.ndarray  # (3, 3) intrinsics
    extrinsics: np.ndarray  # (4, 4) world → camera, OpenCV convention
    width: int
    height: int

    @classmethod
    def from_fovy(cls, fovy_deg: float, width: int, height: int, position, rotation_world_from_mjcam) -> "Camera":
        """Build from MuJoCo's vertical field of view and a camera pose (``cam_xpos``, ``cam_xmat``)."""
        f = (height / 2.0) / np.tan(np.deg2rad(fovy_deg) / 2.0)
        K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
        R = _MJ_TO_CV @ np.asarray(rotation_world_from_mjcam, dtype=float).reshape(3, 3).T
        t = -R @ np.asarray(position, dtype=float)
        E = np.eye(4)
        E[:3, :3], E[:3, 3] = R, t
        return cls(K, E, int(width), int(height))

    @property
    def position(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        R, t = self.extrinsics[:3, :3], self.extrinsics[:3, 3]
        return -R.T @ t

    def world_to_camera(self, points) -> np.ndarray:
        p = np.asarray(points, dtype=float)
        return p @ self.extrinsics[:3, :3].T + self.extrinsics[:3, 3]

    def project(self, points) -> np.ndarray:
        """World points (..., 3) → pixels (..., 2). Points behind the camera give NaN."""
        pc = self.world_to_camera(points)
        z = pc[..., 2:3]
        uvw = pc @ self.K.T
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = uvw[..., :2] / z
        return np.where(z > 0, uv, np.nan)

    def ray(self, pixels) -> np.ndarray:
        """Unit ray directions in world coordinates (..., 3) through pixels (..., 2)."""
        uv = np.asarray(pixels, dtype=float)
        ones = np.ones(uv.shape[:-1] + (1,))
        d_cam = np.concatenate([uv, ones], axis=-1) @ np.linalg.inv(self.K).T
        d_world = d_cam @ self.extrinsics[:3, :3]  # R^T d
        return d_world / np.linalg.norm(d_world, axis=-1, keepdims=True)

    def unproject(self, pixels, height) -> np.ndarray:
        """Where each pixel's ray meets the horizontal plane z = ``height`` (..., 3): ``pixels`` (..., 2) in this
        camera's image (not a normalised uv), ``height`` a world z in metres (not a depth along the ray)."""
        d = self.ray(pixels)
        c = self.position
        h = np.asarray(height, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (h - c[2]) / d[..., 2]
        return c + s[..., None] * d

    def scaled(self, width: int, height: int) -> "Camera":
        """The same camera rendering at another resolution."""
        S = np.diag([width / self.width, height / self.height, 1.0])
        return Camera(S @ self.K, self.extrinsics, int(width), int(height))

    def to_dict(self) -> dict:
        return {"K": self.K.tolist(), "extrinsics": self.extrinsics.tolist(), "width": self.width, "height": self.height}

    @classmethod
    def from_dict(cls, d: dict) -> "Camera":
        return cls(np.asarray(d["K"], float), np.asarray(d["extrinsics"], float), int(d["width"]), int(d["height"]))
