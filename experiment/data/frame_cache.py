"""Decoded frames, cached: every demo's frames decoded once into one raw uint8 file next to the
dataset, memory-mapped."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .reader import DemoFile, open_dataset


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
