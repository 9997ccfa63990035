"""Reading a dataset: :func:`open_dataset` checks a file before anything reads it; truncated, corrupt,
unfinished or foreign files raise :class:`DatasetError` with a message that says what to do."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pxp.core.camera import Camera

from .format import FORMAT, FORMAT_VERSION, REQUIRED_OBS, DatasetError, partial_path


@dataclass
class DemoInfo:
    name: str  # "demo_<episode>"
    episode: int
    length: int
    attrs: dict


class DemoFile:
    """A checked, read-only dataset file. Demos are ordered by episode index."""

    def __init__(self, path: Path | str, verify: bool = False):
        self.path = Path(path)
        self.file = _open_checked(self.path)
        try:
            self.attrs = {k: _attr(v) for k, v in self.file.attrs.items()}
            self.image_key = self.attrs.get("image_key") or _find_image_key(self.file)
            self.demos = _check_demos(self.path, self.file, self.image_key)
            self.failed = [{k: _attr(v) for k, v in g.attrs.items()} for g in self.file["failed"].values()]
            if verify:
                self.verify()
        except BaseException:
            self.file.close()
            raise

    def __enter__(self) -> "DemoFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()

    def __len__(self) -> int:
        return len(self.demos)

    def filter_keys(self) -> list[str]:
        """The file's robomimic filter keys (``mask/<key>``: lists of demo names)."""
        return sorted(self.file["mask"]) if "mask" in self.file else []

    def filtered(self, key: str) -> np.ndarray:
        """Positions in :attr:`demos` of the demos that filter key ``key`` lists."""
        if key not in self.filter_keys():
            raise DatasetError(f"{self.path} has no filter key {key!r} (it has: {', '.join(self.filter_keys()) or 'none'})")
        names = {n.decode() for n in self.file["mask"][key][()]}
        return np.array([i for i, d in enumerate(self.demos) if d.name in names], dtype=np.int64)

    def config(self, key: str) -> Any:
        """A JSON attribute such as ``generator_config`` or ``scene_config``, parsed."""
        return json.loads(self.attrs[key])

    def camera(self, i: int) -> Camera:
        g = self.file["data"][self.demos[i].name]["camera"]
        return Camera(g["K"][()], g["extrinsics"][()], int(g.attrs["width"]), int(g.attrs["height"]))

    def read(self, i: int, key: str, index=()) -> np.ndarray:
        """``data/<demo i>/<key>`` (e.g. ``obs/eef_pos``, ``actions``); a corrupt chunk → DatasetError."""
        try:
            return self.file["data"][self.demos[i].name][key][index]
        except OSError as exc:  # fletcher32 / gzip failure
            raise DatasetError(f"{self.path}: {self.demos[i].name}/{key} is corrupt ({exc}); delete it and rerun `pxp run` to regenerate it") from exc

    def verify(self) -> None:
        """Read every array once so that checksums are checked (slow for big image sets)."""
        for i, demo in enumerate(self.demos):
            self.file["data"][demo.name].visit(lambda k, i=i, demo=demo: self._touch(i, demo, k))

    def _touch(self, i, demo, key) -> None:
        if isinstance(self.file["data"][demo.name][key], h5py.Dataset):
            self.read(i, key)


def open_dataset(path: Path | str, verify: bool = False) -> DemoFile:
    """Open and check a dataset; raises :class:`DatasetError` for anything that must not be trained on."""
    return DemoFile(path, verify=verify)


def _open_checked(path: Path) -> h5py.File:
    if not path.exists():
        if partial_path(path).exists():
            raise DatasetError(f"{path} is not finished ({partial_path(path).name} exists): rerun generation to resume it")
        raise DatasetError(f"no dataset at {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:  # HDF5 notices a truncated file (stored EOF beyond the real end) here
        raise DatasetError(f"{path} is truncated or corrupt and cannot be read ({_first_line(exc)}); delete it and rerun `pxp run` to regenerate it") from exc
    problem = _file_problem(f)
    if problem:
        f.close()
        raise DatasetError(f"{path}: {problem}")
    return f


def _file_problem(f: h5py.File) -> str | None:
    if f.attrs.get("format") != FORMAT:
        return f"not a pxp demo dataset (format attribute {f.attrs.get('format')!r}, expected {FORMAT!r})"
    if int(f.attrs.get("format_version", -1)) > FORMAT_VERSION:
        return f"format version {f.attrs['format_version']} is newer than this pxp reads ({FORMAT_VERSION}); upgrade pxp"
    if not bool(f.attrs.get("complete", False)):
        return "generation did not finish (complete flag not set); delete it and rerun `pxp run` to regenerate it"
    if "data" not in f or "failed" not in f:
        return "missing the data/ or failed/ group"
    return None


def _find_image_key(f: h5py.File) -> str | None:
    """The camera images' name in a file that does not record it: the first uint8 (T, H, W, 3) observation."""
    for g in f["data"].values():
        obs = g.get("obs")
        for key in sorted(obs or ()):
            ds = obs[key]
            if isinstance(ds, h5py.Dataset) and ds.dtype.kind == "u" and ds.ndim == 4 and ds.shape[-1] == 3:
                return key
        return None
    return None


def _check_demos(path: Path, f: h5py.File, image_key: str | None) -> list[DemoInfo]:
    demos = []
    for name, g in f["data"].items():
        problem = _demo_problem(g, image_key)
        if problem:
            raise DatasetError(f"{path}: data/{name} {problem}; delete it and rerun `pxp run` to regenerate it")
        demos.append(DemoInfo(name, int(g.attrs["episode"]), int(g.attrs["num_samples"]),
                              {k: _attr(v) for k, v in g.attrs.items()}))
    expected = f.attrs.get("n_demos")
    if expected is not None and int(expected) != len(demos):
        raise DatasetError(f"{path}: has {len(demos)} demos but its header says {int(expected)}; delete it and rerun `pxp run` to regenerate it")
    return sorted(demos, key=lambda d: d.episode)


def _demo_problem(g: h5py.Group, image_key: str | None) -> str | None:
    if not g.attrs.get("complete", False) or "num_samples" not in g.attrs:
        return "was not completely written"
    T = int(g.attrs["num_samples"])
    if T < 1:
        return "is empty"
    for key, (trailing, kind) in REQUIRED_OBS.items():
        ds = g.get(f"obs/{key}")
        if ds is None:
            return f"has no obs/{key}"
        if ds.shape[0] != T or ds.dtype.kind != kind or (trailing is not None and ds.shape[1:] != trailing):
            return f"obs/{key} has shape {ds.shape} {ds.dtype}, expected ({T}, ...)"
    img = g.get(f"obs/{image_key}") if image_key else None
    if img is None:
        return f"has no camera images (obs/{image_key or '<name>'}: uint8 (T, H, W, 3))"
    if img.shape[0] != T or img.dtype.kind != "u" or img.ndim != 4 or img.shape[-1] != 3:
        return f"obs/{image_key} has shape {img.shape} {img.dtype}, expected ({T}, H, W, 3) uint8"
    if "actions" not in g or g["actions"].shape != (T, 4):
        return f"actions missing or not ({T}, 4)"
    if "camera/K" not in g or g["camera/K"].shape != (3, 3) or g["camera/extrinsics"].shape != (4, 4):
        return "has no valid camera/K and camera/extrinsics"
    return None


def _attr(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
