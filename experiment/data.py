"""Demonstration datasets: the HDF5 format (docs/datasets.md), its writer, its checks, and the loaders.

- :class:`DemoWriter` appends episodes to ``<path>.partial`` (one flush per episode) and renames
  it to ``<path>`` only when every planned episode is in: a file at the final path is complete.
  Reopening a ``.partial`` resumes: episodes already in it are skipped (keyed by episode index),
  a half-written last episode is dropped.
- :func:`open_dataset` checks a file before anything reads it: truncated, corrupt, unfinished or
  foreign files raise :class:`DatasetError` with a message that says what to do.
- :class:`DemoDataset` yields the training batch of docs/architecture.md; images go through
  :func:`normalize_image`, the same function policies use at inference.

Only numpy and h5py are imported at module level; torch is imported when a sample is made.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from pxp.core.camera import Camera
from pxp.core.errors import PxpError

FORMAT = "pxp-demos"
FORMAT_VERSION = 1
# datasets every demo must have: name → (trailing shape, dtype kind); T is the leading dimension. Camera
# images are stored under the name the scene declares (its config's ``image_key``, kept in the file's
# ``image_key`` attribute; files without it: the one uint8 (T, H, W, 3) observation).
REQUIRED_OBS = {"eef_pos": ((3,), "f"), "gripper": ((), "f"), "eef_pixel": ((2,), "f")}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = ["DatasetError", "DemoWriter", "DemoFile", "DemoDataset", "open_dataset", "normalize_image",
           "select_demos", "gripper_labels", "partial_path", "FrameCache",
           "loader_workers", "FORMAT", "FORMAT_VERSION"]


class DatasetError(PxpError):
    """A dataset file that must not be used (missing, unfinished, truncated, corrupt, wrong format)."""


def partial_path(path: Path | str) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".partial")


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
class DemoWriter:
    """Append episodes to ``<path>.partial``; :meth:`finish` marks it complete and renames it.

    ``attrs`` become file attributes (generator name, configs as JSON, ...); ``config_hash``
    identifies what is being generated: resuming a partial file made for another hash is refused.
    Use as a context manager; leaving it without :meth:`finish` keeps the partial file for a rerun.
    """

    def __init__(self, path: Path | str, *, config_hash: str, attrs: dict | None = None,
                 compression: str | None = "gzip", compression_level: int = 4, log=print):
        self.path, self.partial = Path(path), partial_path(path)
        self.config_hash, self.log = config_hash, log
        self._compression = (compression, compression_level if compression == "gzip" else None)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self._open(dict(attrs or {}))
        self.data = self.file.require_group("data")
        self.failed = self.file.require_group("failed")
        self._drop_unfinished()

    def __enter__(self) -> "DemoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.file is not None and self.file.id.valid:
            self.file.close()

    def _open(self, attrs: dict) -> h5py.File:
        if self.partial.exists():
            try:
                f = h5py.File(self.partial, "a")
            except OSError as exc:  # killed while HDF5 metadata was being written: nothing to save
                aside = self.partial.with_name(f"{self.partial.name}.corrupt-{int(time.time())}")
                os.replace(self.partial, aside)
                self.log(f"could not reopen {self.partial.name} ({exc}); moved it to {aside.name}, starting over")
            else:
                self._check_resumable(f)
                return f
        f = h5py.File(self.partial, "w")
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "complete": False,
                        "config_hash": self.config_hash, "created": time.time(), **_attr_values(attrs)})
        return f

    def _check_resumable(self, f: h5py.File) -> None:
        found = f.attrs.get("config_hash")
        if f.attrs.get("format") != FORMAT or found != self.config_hash:
            f.close()
            raise DatasetError(f"{self.partial} was started for another configuration (hash {found}, now "
                               f"{self.config_hash}); delete it to generate this one")

    def _drop_unfinished(self) -> None:
        # A demo's "complete" attribute is written after its arrays: a group without it was cut short.
        for group in (self.data, self.failed):
            for name in [n for n in group if not group[n].attrs.get("complete", False)]:
                self.log(f"dropping unfinished {group.name}/{name} from {self.partial.name}")
                del group[name]
        self.file.flush()

    def done(self) -> set[int]:
        """Episode indices already written (successful or failed)."""
        return {int(g.attrs["episode"]) for grp in (self.data, self.failed) for g in grp.values()}

    def write(self, index: int, episode: dict, attrs: dict, success: bool) -> None:
        """Store episode ``index``: arrays under ``data/demo_<index>`` if ``success``, else only its
        attributes under ``failed/episode_<index>`` (counted, never trained on)."""
        name = f"demo_{index}" if success else f"episode_{index}"
        parent = self.data if success else self.failed
        if name in parent:
            raise DatasetError(f"episode {index} is already in {self.partial}")
        self._check_space(episode if success else {})
        try:
            g = parent.create_group(name)
            if success:
                self._write_arrays(g, episode)
            g.attrs.update(_attr_values({**attrs, "episode": int(index), "num_samples": _length(episode)}))
            g.attrs["complete"] = True
            self.file.flush()
        except OSError:
            self.file = None  # HDF5 after a failed write: closing or flushing it can segfault; leave it
            raise

    def _check_space(self, episode: dict) -> None:
        """Refuse an episode the disk cannot hold before HDF5 starts writing it: HDF5 does not recover
        from ENOSPC (its next flush can segfault), and the partial file stays valid for a resume."""
        import errno
        import shutil

        need = 2 * sum(getattr(a, "nbytes", 0) for a in _arrays(episode)) + (1 << 20)
        free = shutil.disk_usage(self.partial.parent).free
        if free < need:
            raise OSError(errno.ENOSPC, f"No space left on device ({free >> 20} MB free, an episode needs up to "
                                        f"{need >> 20} MB)", str(self.partial))

    def _write_arrays(self, g: h5py.Group, ep: dict) -> None:
        comp, level = self._compression
        obs = ep["obs"]
        T = _length(ep)
        for key, arr in obs.items():
            arr = np.asarray(arr)
            if len(arr) != T:
                raise ValueError(f"obs/{key} has {len(arr)} steps, expected {T}")
            image = arr.dtype == np.uint8 and arr.ndim == 4
            g.create_dataset(f"obs/{key}", data=arr if image else arr.astype(np.float64),
                             chunks=(1, *arr.shape[1:]) if image else None,  # one frame a chunk: random access
                             compression=comp if image else None, compression_opts=level if image else None,
                             fletcher32=True)  # checksums: a corrupt chunk fails loudly on read
        g.create_dataset("actions", data=np.asarray(ep["actions"], np.float64), fletcher32=True)
        for key, arr in ep.get("extra", {}).items():  # e.g. the expert's phase per step, as stored
            arr = np.asarray(arr)
            g.create_dataset(key, data=arr.astype("S") if arr.dtype.kind == "U" else arr, fletcher32=True)
        cam: Camera = ep["camera"]
        g.create_dataset("camera/K", data=np.asarray(cam.K, np.float64))
        g.create_dataset("camera/extrinsics", data=np.asarray(cam.extrinsics, np.float64))
        g["camera"].attrs.update({"width": cam.width, "height": cam.height})

    def finish(self, extra_attrs: dict | None = None, masks: dict[str, list[int]] | None = None) -> Path:
        """Mark the file complete, close it and rename it to the final path. ``masks``: filter key →
        episode indices, written as robomimic's ``mask/<key>`` (the names of those that are demos)."""
        for key, episodes in (masks or {}).items():
            names = sorted((f"demo_{i}" for i in episodes if f"demo_{i}" in self.data), key=lambda n: int(n[5:]))
            if f"mask/{key}" in self.file:
                del self.file[f"mask/{key}"]
            self.file.create_dataset(f"mask/{key}", data=np.array(names, dtype="S"))
        counts = {"n_demos": len(self.data), "n_failed": len(self.failed),
                  "n_episodes": len(self.data) + len(self.failed),
                  "n_frames": int(sum(g.attrs["num_samples"] for g in self.data.values()))}
        self.file.attrs.update(_attr_values({**counts, **(extra_attrs or {}), "finished": time.time()}))
        self.file.attrs["complete"] = True
        self.file.close()
        with open(self.partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.partial, self.path)
        return self.path


def _length(ep: dict) -> int:
    return len(ep["obs"]["eef_pos"])


def _attr_values(attrs: dict) -> dict:
    """HDF5 attributes hold scalars, strings and arrays: dicts and None become JSON strings."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, (dict, list, tuple)) and not _numeric(v):
            v = json.dumps(v, default=_json_default)
        elif v is None:
            v = "null"
        elif hasattr(v, "model_dump_json"):
            v = v.model_dump_json()
        out[k] = v
    return out


def _numeric(v) -> bool:
    try:
        return np.asarray(v).dtype.kind in "biuf"
    except (ValueError, TypeError):
        return False


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    return str(o)


# ---------------------------------------------------------------------------------------------
# Opening and checking
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Shared helpers for training and inference
# ---------------------------------------------------------------------------------------------
def normalize_image(image):
    """uint8 RGB ``(H, W, 3)`` or ``(B, H, W, 3)`` (numpy or torch, any device) → float32 torch
    ``(3, H, W)`` / ``(B, 3, H, W)`` normalised with the ImageNet mean and std.

    Training and inference both call this, so a model never sees differently scaled pixels.
    Float input is refused: it has usually been normalised once already.
    """
    import torch

    x = torch.as_tensor(image) if not isinstance(image, torch.Tensor) else image
    if x.dtype != torch.uint8:
        raise TypeError(f"normalize_image expects uint8 RGB images, got {x.dtype}")
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(f"normalize_image expects (H, W, 3) or (B, H, W, 3), got {tuple(x.shape)}")
    x = x.movedim(-1, -3).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def gripper_labels(commands) -> np.ndarray:
    """Per-frame gripper labels (0/1) from the per-step commands (``actions[t, 3]`` = command executed
    from frame t to t+1): frame t's label is the command of the step that ARRIVED at it,
    ``commands[t-1]`` (frame 0: ``commands[0]``).

    A predicted target (position at frame t+k·s, this label) is executed by servoing to the position
    with the label's command applied on the way, so the label must be the command that was applied on
    the way there. ``commands[t]`` (what the robot did after arriving) would close the gripper one
    target early, while still descending, and start lifting before the fingers had shut.
    """
    c = np.asarray(commands, dtype=float).reshape(-1) > 0.5
    return np.concatenate([c[:1], c[:-1]]).astype(np.float32) if len(c) else c.astype(np.float32)


def select_demos(n_demos: int, count: int | None, seed: int = 0) -> np.ndarray:
    """``count`` of ``n_demos`` demos chosen by ``seed`` (sorted indices); ``None`` → all.

    The choice is a prefix of one seeded permutation, so for a seed the 3-demo subset contains
    the 1-demo subset, the 5-demo subset the 3-demo one, and so on: a data-efficiency sweep
    adds demos instead of drawing unrelated sets.
    """
    if count is None:
        return np.arange(n_demos)
    if not 1 <= count <= n_demos:
        raise DatasetError(f"asked for {count} demos but the dataset has {n_demos} successful ones")
    return np.sort(np.random.default_rng(seed).permutation(n_demos)[:count])


# ---------------------------------------------------------------------------------------------
# Training loader
# ---------------------------------------------------------------------------------------------
class DemoDataset:
    """Map-style dataset (use with ``torch.utils.data.DataLoader``) of every frame t of the chosen demos.

    A sample is the batch entry of docs/architecture.md: ``image`` at t; ``eef_pos``, ``eef_pixel``,
    ``gripper`` at t; ``target_pos`` / ``target_pixel`` / ``target_gripper`` at t+s, …, t+T·s (clamped
    to the demo's last frame).
    ``target_gripper`` is the gripper label of those frames (:func:`gripper_labels`), 0 or 1.

    ``count``/``seed`` pick a demo subset with :func:`select_demos`; ``demos`` picks explicit
    positions in the (episode-ordered) list of successful demos instead.

    Frames are gzip-compressed in the HDF5 file; decoding them per sample would starve a GPU at 448 px.
    ``frames`` says where decoded uint8 frames come from:

    - ``"ram"``: decoded once into memory (the default when they fit in ``preload_limit_gb``);
    - ``"cache"``: decoded once into ``<dataset>.frames.u8`` next to the dataset, memory-mapped
      (the default above the limit; rebuilt when the dataset changes, see :class:`FrameCache`);
    - ``"hdf5"``: read and decoded per sample (no extra memory or disk).

    ``preload=True/False`` is the older spelling of ``"ram"`` / ``"hdf5"``.
    """

    def __init__(self, path: Path | str, horizon: int, stride: int = 1, *, count: int | None = None, seed: int = 0,
                 demos: Sequence[int] | None = None,
                 preload: bool | None = None, preload_limit_gb: float = 2.0, frames: str | None = None):
        if horizon < 1 or stride < 1:
            raise ValueError(f"horizon and stride must be >= 1, got {horizon}, {stride}")
        self.path, self.horizon, self.stride = Path(path), int(horizon), int(stride)
        with open_dataset(self.path) as f:
            self.attrs, self.n_failed = f.attrs, len(f.failed)
            chosen = select_demos(len(f), count, seed) if demos is None else np.asarray(demos, dtype=np.int64)
            self.demos = [f.demos[i] for i in chosen]
            self._low = [self._load_low(f, int(i)) for i in chosen]
            self.image_key = f.image_key
            n_bytes = sum(int(np.prod(f.file["data"][d.name][f"obs/{f.image_key}"].shape)) for d in self.demos)
            self.frames = _frames_mode(frames, preload, n_bytes, preload_limit_gb)
            self._images = [f.read(int(i), f"obs/{f.image_key}") for i in chosen] if self.frames == "ram" else None
        self._cache = FrameCache(self.path).build() if self.frames == "cache" else None
        self._cache_demo = [self._cache.demo_index(d.name) for d in self.demos] if self._cache else None
        lengths = np.array([d.length for d in self.demos], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(lengths)])
        self._file, self._pid = None, None

    @staticmethod
    def _load_low(f: DemoFile, i: int) -> dict:
        cam = f.camera(i)
        return {"eef_pos": f.read(i, "obs/eef_pos").astype(np.float32),
                "eef_pixel": f.read(i, "obs/eef_pixel").astype(np.float32),
                "gripper": f.read(i, "obs/gripper").astype(np.float32),
                "grip_cmd": gripper_labels(f.read(i, "actions")[:, 3]).astype(np.float32),
                "K": cam.K.astype(np.float32), "extrinsics": cam.extrinsics.astype(np.float32)}

    def __len__(self) -> int:
        return int(self._starts[-1])

    def sample_weights(self, sampling: str) -> np.ndarray | None:
        """Relative draw probability of each sample: None for ``frames`` (uniform); ``demos``: 1 / the demo's
        length; ``phases``: 1 / (phases in the demo × frames in that phase), from each demo's ``phase``."""
        if sampling == "frames":
            return None
        if sampling == "demos":
            return np.concatenate([np.full(d.length, 1.0 / d.length) for d in self.demos])
        parts = []
        with h5py.File(self.path, "r") as f:  # one open for every demo's phase labels
            for demo in self.demos:
                _, inverse, counts = np.unique(self._phases(f, demo), return_inverse=True, return_counts=True)
                parts.append(1.0 / (len(counts) * counts[inverse]))
        return np.concatenate(parts)

    def _phases(self, f, demo) -> np.ndarray:
        group = f["data"][demo.name]
        if "phase" not in group:
            raise DatasetError(f"{self.path}: {demo.name} has no per-step 'phase', which "
                               "train.sampling: phases needs (use frames or demos)")
        phase = group["phase"][()]
        if len(phase) < demo.length:
            raise DatasetError(f"{self.path}: {demo.name}/phase has {len(phase)} steps, expected {demo.length}")
        return phase[:demo.length]

    def locate(self, index: int) -> tuple[int, int]:
        """Sample index → (position in ``self.demos``, frame t)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        d = int(np.searchsorted(self._starts, index, side="right") - 1)
        return d, int(index - self._starts[d])

    def future_frames(self, d: int, t: int) -> np.ndarray:
        last = self.demos[d].length - 1
        return np.minimum(t + self.stride * np.arange(1, self.horizon + 1), last)

    def __getitem__(self, index: int) -> dict:
        d, t = self.locate(index)
        return {"image": normalize_image(self._image(d, t)), **self.low_dim(index)}

    def low_dim(self, index: int) -> dict:
        """The sample without its image (what a head trained on cached backbone features reads)."""
        import torch

        d, t = self.locate(index)
        low, fut = self._low[d], self.future_frames(d, t)
        sample = {"eef_pos": low["eef_pos"][t], "eef_pixel": low["eef_pixel"][t], "gripper": low["gripper"][t],
                  "target_pos": low["eef_pos"][fut], "target_pixel": low["eef_pixel"][fut],
                  "target_gripper": low["grip_cmd"][fut], "K": low["K"], "extrinsics": low["extrinsics"]}
        return {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v)) for k, v in sample.items()}

    def _image(self, d: int, t: int) -> np.ndarray:
        if self._images is not None:
            return self._images[d][t]
        if self._cache is not None:
            return self._cache.frame(self._cache_demo[d], t)
        # h5py handles do not survive fork: each DataLoader worker opens its own.
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        try:
            return self._file["data"][self.demos[d].name][f"obs/{self.image_key}"][t]
        except OSError as exc:
            raise DatasetError(f"{self.path}: {self.demos[d].name} image {t} is corrupt ({exc}); delete it and rerun `pxp run` to regenerate it") from exc

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None  # spawn-started DataLoader workers reopen the file
        return state


def loader_workers(num_workers: int | None, device) -> int:
    """DataLoader worker processes: as asked, or (None) 0 on CPU, where workers would only take cores
    from the training step, and on CUDA one per core up to 8, leaving one core to the training loop."""
    if num_workers is not None:
        return int(num_workers)
    if str(device).split(":")[0] != "cuda":
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(0, min(8, cores - 1))


def _frames_mode(frames: str | None, preload: bool | None, n_bytes: int, limit_gb: float) -> str:
    if frames is None:
        frames = {True: "ram", False: "hdf5", None: "auto"}[preload]
    if frames not in ("auto", "ram", "cache", "hdf5"):
        raise ValueError(f"frames must be auto, ram, cache or hdf5, got {frames!r}")
    if frames == "auto":
        return "ram" if n_bytes < limit_gb * 2**30 else "cache"
    return frames


# ---------------------------------------------------------------------------------------------
# Decoded frame cache
# ---------------------------------------------------------------------------------------------
class FrameCache:
    """Every demo's frames, decoded once, as one raw uint8 file next to the dataset, memory-mapped.

    ``<dataset>.frames.u8`` holds the frames of all successful demos back to back; ``<dataset>.frames.json``
    holds each demo's offset and shape and the dataset's key (config hash, file size, demo names and
    lengths), so a cache left from another version of the dataset is detected and rebuilt. Both are
    written atomically (temp file + rename, the json last): a killed build leaves no cache that looks whole.
    Reading a frame is a memory copy from the page cache, shared by every DataLoader worker.
    """

    def __init__(self, dataset: Path | str):
        self.dataset = Path(dataset)
        self.data_path = self.dataset.with_name(self.dataset.name + ".frames.u8")
        self.index_path = self.dataset.with_name(self.dataset.name + ".frames.json")
        self.index: dict | None = None
        self._map, self._pid = None, None

    def key(self, f: DemoFile) -> dict:
        return {"format": 1, "config_hash": str(f.attrs.get("config_hash")), "size": self.dataset.stat().st_size,
                "demos": [[d.name, d.length] for d in f.demos]}

    def build(self) -> "FrameCache":
        """Use the cache if it matches the dataset, else (re)build it; returns self."""
        from pxp.core import io

        with open_dataset(self.dataset) as f:
            key = self.key(f)
            index = io.read_json(self.index_path)
            if not (index and index.get("key") == key and self._complete(index)):
                index = self._write(f, key)
        self.index = index
        return self

    def _complete(self, index: dict) -> bool:
        return self.data_path.exists() and self.data_path.stat().st_size == index["bytes"]

    def _write(self, f: DemoFile, key: dict) -> dict:
        from pxp.core import io

        demos, offset = {}, 0
        for i, d in enumerate(f.demos):
            shape = tuple(f.file["data"][d.name][f"obs/{f.image_key}"].shape)
            demos[d.name] = {"offset": offset, "shape": shape}
            offset += int(np.prod(shape))
        tmp = self.data_path.with_name(f"{self.data_path.name}.tmp-{os.getpid()}")
        try:
            out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(max(offset, 1),))
            for i, d in enumerate(f.demos):
                start, shape = demos[d.name]["offset"], demos[d.name]["shape"]
                out[start:start + int(np.prod(shape))] = f.read(i, f"obs/{f.image_key}").reshape(-1)
            out.flush()
            del out
            if offset == 0:
                os.truncate(tmp, 0)
            os.replace(tmp, self.data_path)
        finally:
            if tmp.exists():
                tmp.unlink()
        index = {"key": key, "bytes": offset, "demos": demos}
        io.write_json(self.index_path, index)
        return index

    def demo_index(self, name: str) -> tuple[int, tuple]:
        entry = self.index["demos"][name]
        return int(entry["offset"]), tuple(entry["shape"])

    def frame(self, demo: tuple[int, tuple], t: int) -> np.ndarray:
        """Frame ``t`` of a demo (from :meth:`demo_index`) as a uint8 array (a copy)."""
        # a memory map does not survive pickling into spawn workers: each process maps the file itself
        if self._map is None or self._pid != os.getpid():
            self._map, self._pid = np.memmap(self.data_path, dtype=np.uint8, mode="r"), os.getpid()
        offset, shape = demo
        size = int(np.prod(shape[1:]))
        start = offset + t * size
        return np.array(self._map[start:start + size]).reshape(shape[1:])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_map"], state["_pid"] = None, None
        return state

def _arrays(tree):
    """Every array in a nested dict of arrays (an episode record)."""
    for v in (tree.values() if isinstance(tree, dict) else ()):
        if isinstance(v, dict):
            yield from _arrays(v)
        elif hasattr(v, "nbytes"):
            yield v
