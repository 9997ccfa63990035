"""Demonstration datasets: the HDF5 format (docs/datasets.md), its writer, its checks, and the loaders.

- :mod:`.format`: the format's name and version, the datasets every demo has, :class:`DatasetError`.
- :mod:`.writer`: :class:`DemoWriter` appends episodes to ``<path>.partial`` (one flush per episode) and
  renames it to ``<path>`` only when every planned episode is in: a file at the final path is complete.
  Reopening a ``.partial`` resumes: episodes already in it are skipped (keyed by episode index), a
  half-written last episode is dropped.
- :mod:`.reader`: :func:`open_dataset` checks a file before anything reads it: truncated, corrupt,
  unfinished or foreign files raise :class:`DatasetError` with a message that says what to do.
- :mod:`.samples`: :func:`normalize_image` (the same function policies use at inference), the gripper
  labels and which demos a policy trains on.
- :mod:`.loader`: :class:`DemoDataset` yields the training batch of docs/architecture.md.
- :mod:`.frame_cache`: :class:`FrameCache`, every demo's frames decoded once and memory-mapped.

Only numpy and h5py are imported at module level; torch is imported when a sample is made.
"""
from .format import FORMAT, FORMAT_VERSION, DatasetError, partial_path
from .frame_cache import FrameCache
from .loader import DemoDataset, loader_workers
from .reader import DemoFile, open_dataset
from .samples import gripper_labels, normalize_image, select_demos
from .writer import DemoWriter

__all__ = ["DatasetError", "DemoWriter", "DemoFile", "DemoDataset", "open_dataset", "normalize_image",
           "select_demos", "gripper_labels", "partial_path", "FrameCache",
           "loader_workers", "FORMAT", "FORMAT_VERSION"]
