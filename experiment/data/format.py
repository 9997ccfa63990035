"""The demonstration file format (docs/datasets.md): its name and version, the datasets every demo has,
the error a file that must not be used raises, and where an unfinished file lives."""
from __future__ import annotations

from pathlib import Path

from pxp.core.errors import PxpError

FORMAT = "pxp-demos"
FORMAT_VERSION = 1
# datasets every demo must have: name → (trailing shape, dtype kind); T is the leading dimension. Camera
# images are stored under the name the scene declares (its config's ``image_key``, kept in the file's
# ``image_key`` attribute; files without it: the one uint8 (T, H, W, 3) observation).
REQUIRED_OBS = {"eef_pos": ((3,), "f"), "gripper": ((), "f"), "eef_pixel": ((2,), "f")}


class DatasetError(PxpError):
    """A dataset file that must not be used (missing, unfinished, truncated, corrupt, wrong format)."""


def partial_path(path: Path | str) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".partial")
