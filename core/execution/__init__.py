"""Where tasks run: one :class:`Executor` interface, the local process pool (``local.py``) and a Ray cluster
(``ray_cluster.py``, imported only when asked for). The runner builds one and passes it down explicitly
(``ctx.executor``); dataset episodes, trainings and evaluation episodes all go through ``run_tasks``."""
from __future__ import annotations

from .base import (INPUT_DIR, INPUT_FILE, OUTPUT_DIR, OUTPUT_FILE, Executor, TaskResult, declared_files, input_dir,
                   input_file, output_dir, output_file)
from .local import (LocalExecutor, close_worker_cache, default_workers, keep_inline_cache, keeping_inline_cache,
                    run_tasks, start_clock, worker_cache)

EXECUTORS = ("local", "ray")

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "TaskResult", "make_executor", "run_tasks", "start_clock",
           "worker_cache", "close_worker_cache", "keep_inline_cache", "keeping_inline_cache", "default_workers",
           "input_dir", "input_file", "output_dir", "output_file", "declared_files",
           "INPUT_DIR", "INPUT_FILE", "OUTPUT_DIR", "OUTPUT_FILE"]


def make_executor(name: str | None, address: str | None = None, shared_root=None) -> Executor:
    """The executor called ``name``. ``"ray"`` checks that ray is installed (it is imported nowhere else);
    ``shared_root``: a directory the driver writes (the run directory) by which a Ray worker tells whether
    it sees the driver's files or needs them shipped."""
    if name in (None, "local"):
        return LocalExecutor()
    if name == "ray":
        from .ray_cluster import RayExecutor

        return RayExecutor(address=address, shared_root=shared_root)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
