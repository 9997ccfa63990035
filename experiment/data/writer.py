"""Writing a dataset: :class:`DemoWriter` appends episodes to ``<path>.partial`` (one flush per episode)
and renames it to ``<path>`` only when every planned episode is in: a file at the final path is complete.
Reopening a ``.partial`` resumes: episodes already in it are skipped (keyed by episode index), a
half-written last episode is dropped."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import h5py
import numpy as np

from pxp.core.camera import Camera

from .format import FORMAT, FORMAT_VERSION, DatasetError, partial_path


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


def _arrays(tree):
    """Every array in a nested dict of arrays (an episode record)."""
    for v in (tree.values() if isinstance(tree, dict) else ()):
        if isinstance(v, dict):
            yield from _arrays(v)
        elif hasattr(v, "nbytes"):
            yield v
