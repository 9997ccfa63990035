"""A frozen backbone's features, computed once per dataset and memory-mapped, so heads train without it.

Training uses no image augmentation, so the output of a backbone's frozen leading part is a pure function
of the frame: computing it at every step (the dominant cost of a ViT-S on a CPU) is wasted work. A backbone
is cacheable when it offers the optional methods of :class:`pxp.core.contracts.Backbone`:

- ``frozen_key() -> dict | None``: what its frozen part computes (config, weights, image size); None when
  nothing is frozen;
- ``frozen_features(images) -> Tensor (B, ...)``: the frozen part alone (no parameter in it trains);
- ``from_frozen(features) -> (feature_map, cls)``: the rest, so ``forward(x) == from_frozen(frozen_features(x))``.

:func:`wrap` replaces a :class:`~pxp.experiment.data.DemoDataset` by one whose samples carry ``features``
instead of ``image``; :meth:`pxp.experiment.policy.Policy.forward` runs only the rest on them. Rollouts, the
probe and the prediction strips pass images and run the whole backbone live.

Layout, next to the dataset: ``<dataset>.features/<key>/features.bin`` (every successful demo's frames back to
back, float16, raw, memory-mapped) and ``index.json`` (the key's parts, the dataset's identity, each demo's
offset, the shape, the sha256 of ``features.bin``). ``<key>`` hashes the backbone's ``frozen_key()``, a
digest of its frozen tensors (so a random init or weights copied by ``init_from`` get their own cache) and
the dataset's identity. A build writes ``<key>.partial/`` and renames it (atomic); a cache is used only
after its file matches its sha256; another process building the same cache waits on a lock.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
from pathlib import Path

import numpy as np

from pxp.core import io

FORMAT = "pxp-features/1"
DTYPE = np.float16  # features of a normalised ViT are O(1–10): float16 keeps 3 digits at half the disk
BATCH = 32
_verified: dict[tuple, bool] = {}  # (path, size, mtime) → sha256 checked in this process


def cacheable(backbone) -> bool:
    """Whether ``backbone`` declares a frozen leading part (see the module docstring)."""
    key = getattr(backbone, "frozen_key", None)
    return key is not None and key() is not None and hasattr(backbone, "frozen_features") and hasattr(backbone, "from_frozen")


def wrap(policy, train_ds, holdout_ds, log=print, dtype=None):
    """(train, held-out) datasets that read cached frozen features when the policy's backbone has a frozen
    part and the datasets are demo files; else the datasets unchanged."""
    from .data import DemoDataset

    if not cacheable(policy.backbone) or not isinstance(train_ds, DemoDataset):
        return train_ds, holdout_ds
    cache = FeatureCache.ensure(policy, train_ds.path, log=log, dtype=dtype or DTYPE)
    return (CachedFeatures(train_ds, cache),
            CachedFeatures(holdout_ds, cache) if isinstance(holdout_ds, DemoDataset) else holdout_ds)


def summary(dataset) -> dict | None:
    """For the training summary: the cache a dataset reads (None: not cached), and the seconds its build took
    in this call (0 when it was already there), since a build is paid inside the first policy's training."""
    if not isinstance(dataset, CachedFeatures):
        return None
    cache = dataset.cache
    return {"directory": str(cache.directory), "frames": cache.index["frames"],
            "built": cache.built_seconds is not None, "build_seconds": cache.built_seconds or 0.0, "frames_per_second": round(cache.index["frames"] / cache.index["seconds"], 2)
            if cache.index.get("seconds") else None}


def frozen_digest(backbone) -> str:
    """sha256 over the backbone's frozen tensors (parameters that do not train, and buffers), by name."""
    h = hashlib.sha256()
    tensors = [(n, p) for n, p in backbone.named_parameters() if not p.requires_grad] + list(backbone.named_buffers())
    for name, t in sorted(tensors, key=lambda item: item[0]):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """One built cache directory: its index and a lazily opened read-only memory map."""

    def __init__(self, directory: Path, index: dict, built_seconds: float | None = None):
        # built_seconds: what this process paid to build it (None: it was already built)
        self.directory, self.index, self.built_seconds = Path(directory), index, built_seconds
        self.shape, self.dtype = tuple(index["shape"]), np.dtype(index["dtype"])
        self._map, self._pid = None, None

    @classmethod
    def ensure(cls, policy, dataset: Path, log=print, dtype=DTYPE) -> "FeatureCache":
        """The verified cache of ``policy``'s frozen features over every demo of ``dataset``, built if needed."""
        from .data import FrameCache, open_dataset

        with open_dataset(dataset) as f:
            identity = FrameCache(dataset).key(f)
        parts = {"format": FORMAT, "backbone": policy.backbone.frozen_key(), "frozen": frozen_digest(policy.backbone),
                 "dataset": identity, "dtype": np.dtype(dtype).name}
        root = Path(dataset).with_name(Path(dataset).name + ".features")
        directory = root / io.config_hash(parts)
        root.mkdir(parents=True, exist_ok=True)
        with open(root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a second trainer of the same cache waits, then reads it
            problem = _problem(directory, parts)
            if problem is None:
                return cls(directory, io.read_json(directory / "index.json"))
            if directory.exists():
                log(f"feature cache {directory.name}: rebuilding ({problem})")
            _remove_stale(root, identity)
            index = _build(policy, dataset, directory, parts, log, np.dtype(dtype))
            return cls(directory, index, index["seconds"])

    def demo_offset(self, name: str) -> int:
        return int(self.index["demos"][name]["offset"])

    def frame(self, offset: int, t: int) -> np.ndarray:
        """Features of frame ``t`` of the demo starting at ``offset`` (a float32 copy)."""
        # a memory map does not survive pickling into spawn workers: each process maps the file itself
        if self._map is None or self._pid != os.getpid():
            self._map = np.memmap(self.directory / "features.bin", dtype=self.dtype, mode="r",
                                  shape=(self.index["frames"], *self.shape))
            self._pid = os.getpid()
        return np.array(self._map[offset + t], dtype=np.float32)

    def __getstate__(self):
        return {**self.__dict__, "_map": None, "_pid": None}


class CachedFeatures:
    """A DemoDataset whose samples carry the cached ``features`` of their frame (and ``image_hw``, the
    frame's size, for pixel coordinates) instead of the decoded ``image``; everything else delegates."""

    def __init__(self, base, cache: FeatureCache):
        self.base, self.cache = base, cache
        self._offsets = [cache.demo_offset(d.name) for d in base.demos]
        self._hw = tuple(cache.index["image_hw"])

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        import torch

        d, t = self.base.locate(index)
        sample = self.base.low_dim(index)
        sample["features"] = torch.from_numpy(self.cache.frame(self._offsets[d], t))
        sample["image_hw"] = torch.tensor(self._hw)
        return sample

    def __getattr__(self, name):  # demos, sample_weights, path, …
        if name in ("base", "cache"):
            raise AttributeError(name)
        return getattr(self.base, name)


def _problem(directory: Path, parts: dict) -> str | None:
    """None when ``directory`` holds a complete cache of ``parts`` whose file matches its sha256."""
    index = io.read_json(directory / "index.json")
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        return "no complete index"
    if index.get("key") != parts:
        return "its index describes another backbone or dataset"
    data = directory / "features.bin"
    if not data.exists() or data.stat().st_size != index["bytes"]:
        return "features.bin is missing or has the wrong size"
    stamp = (str(data), data.stat().st_size, data.stat().st_mtime_ns)
    if not _verified.get(stamp):
        if io.file_sha256(data) != index["sha256"]:
            return "features.bin does not match its sha256"
        _verified[stamp] = True
    return None


def _remove_stale(root: Path, identity: dict) -> None:
    """Caches of an older version of the dataset (and torn builds) go; other backbones' stay."""
    for d in root.iterdir():
        if not d.is_dir():
            continue
        index = io.read_json(d / "index.json")
        if d.name.endswith(".partial") or not isinstance(index, dict) or index.get("key", {}).get("dataset") != identity:
            shutil.rmtree(d, ignore_errors=True)


def _build(policy, dataset: Path, directory: Path, parts: dict, log, dtype) -> dict:
    """Run the frozen part over every frame of every successful demo, write ``directory`` atomically."""
    import torch

    from .data import open_dataset

    backbone = policy.backbone
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with open_dataset(dataset) as f:
        lengths = [d.length for d in f.demos]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
        first = f.read(0, f"obs/{f.image_key}", index=slice(0, 1)) if len(f) else None
        if first is None:
            raise ValueError(f"{dataset}: no successful demo to cache features of")
        was_training = backbone.training
        backbone.eval()
        try:
            with torch.no_grad():
                shape = tuple(_features(policy, first).shape[1:])
                out = np.memmap(partial / "features.bin", dtype=dtype, mode="w+", shape=(int(offsets[-1]), *shape))
                t0 = time.monotonic()
                for i, d in enumerate(f.demos):
                    frames = f.read(i, f"obs/{f.image_key}")
                    for s in range(0, len(frames), BATCH):
                        feats = _features(policy, frames[s:s + BATCH])
                        out[offsets[i] + s: offsets[i] + s + len(feats)] = feats.cpu().numpy().astype(dtype)
                out.flush()
                del out
        finally:
            backbone.train(was_training)
        seconds = time.monotonic() - t0
        index = {"format": FORMAT, "key": parts, "frames": int(offsets[-1]), "shape": list(shape),
                 "dtype": np.dtype(dtype).name, "image_hw": list(first.shape[1:3]),
                 "demos": {d.name: {"offset": int(offsets[i]), "length": int(d.length)} for i, d in enumerate(f.demos)},
                 "bytes": (partial / "features.bin").stat().st_size, "sha256": io.file_sha256(partial / "features.bin"),
                 "seconds": round(seconds, 3)}
    io.write_json(partial / "index.json", index)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(partial, directory)  # the commit point: a complete directory appears at once
    log(f"feature cache: {index['frames']} frames of {dataset.name} through the frozen backbone in {seconds:.0f} s "
        f"({index['frames'] / max(seconds, 1e-9):.1f} frames/s), {index['bytes'] / 2**30:.2f} GiB at {directory}")
    return index


def _features(policy, frames):
    """The frozen part's output for uint8 frames (B, H, W, 3), through the same input path as training."""
    from .data import normalize_image

    x = policy.backbone_input(normalize_image(frames).to(policy.device))
    return policy.backbone.frozen_features(x)
