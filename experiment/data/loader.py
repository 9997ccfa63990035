"""The training loader: :class:`DemoDataset` yields the training batch of docs/architecture.md (torch is
imported when a sample is made)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from .format import DatasetError
from .frame_cache import FrameCache
from .reader import DemoFile, open_dataset
from .samples import gripper_labels, normalize_image, select_demos


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
