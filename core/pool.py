"""The worker pool shared by dataset generation and evaluation rollouts.

One small interface, so that a different backend (Ray, a cluster) can replace it later::

    for r in run_tasks(fn, tasks, workers=4, progress=bar):
        if r.error: ...            # the task raised; the others went on
        else: write(r.value)       # results arrive as they complete: write incrementally

- ``fn`` runs as ``fn(task)`` in a worker process. With the spawn start method (used so that
  workers never inherit a half-initialised EGL/MuJoCo context or torch threads) ``fn`` and every
  task must be picklable, i.e. ``fn`` is a module-level function.
- ``workers=None`` → one per available core; ``workers=1`` → runs in this process, no pool, so
  tests and debuggers see plain stack frames.
- ``executor``: where tasks run. ``None`` → the one selected with :func:`using_executor` (the
  runner selects it from ``--executor`` / ``PXP_EXECUTOR`` / the spec), else this local pool.
  ``"ray"`` runs each task as a Ray task (``core/ray_executor.py``, imported only then).
- Expensive per-process state (a scene with its renderer, ~2 GB) lives in :func:`worker_cache`:
  created lazily by the first task that needs it, reused by the following ones, and closed when
  the :func:`run_tasks` call ends (in-process) or when the worker process exits.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

__all__ = ["TaskResult", "run_tasks", "worker_cache", "close_worker_cache", "default_workers", "using_executor",
           "make_executor"]


@dataclass
class TaskResult:
    index: int  # position of the task in the input sequence
    task: Any
    value: Any = None
    error: str | None = None  # "ExcType: message (file:line in func)"; None on success
    traceback: str | None = None  # the full formatted traceback, for logs

    @property
    def ok(self) -> bool:
        return self.error is None


# ---------------------------------------------------------------------------------------------
# Per-process cache
# ---------------------------------------------------------------------------------------------
# slot → (key, value). One entry per slot bounds memory: asking a slot for a new key (another
# scene config) closes the previous value first, so a worker never holds two 2 GB scenes.
_CACHE: dict[str, tuple[Any, Any]] = {}


def worker_cache(key: Any, factory: Callable[[], Any], slot: str = "default") -> Any:
    """The value cached in this process under ``slot`` for ``key``, built by ``factory()`` if absent.

    ``key`` must be hashable and should identify the value completely (e.g. a config hash).
    Values with a ``close()`` method are closed when replaced or when the cache is closed.
    """
    held = _CACHE.get(slot)
    if held is not None and held[0] == key:
        return held[1]
    if held is not None:
        del _CACHE[slot]
        _close(held[1])
    value = factory()
    _CACHE[slot] = (key, value)
    return value


_KEEP = [0]  # > 0 inside keep_inline_cache()


@contextlib.contextmanager
def keep_inline_cache():
    """In-process runs (``workers=1``) inside this block keep their cached values (a scene: seconds to
    build) from one :func:`run_tasks` call to the next, e.g. from dataset generation to evaluation;
    they are closed when the outermost block ends."""
    _KEEP[0] += 1
    try:
        yield
    finally:
        _KEEP[0] -= 1
        if not _KEEP[0]:
            close_worker_cache()


def keeping_inline_cache() -> bool:
    """True inside :func:`keep_inline_cache`: values put in :func:`worker_cache` outlive the current call."""
    return _KEEP[0] > 0


def close_worker_cache() -> None:
    """Close and forget every cached value in this process (safe to call twice)."""
    while _CACHE:
        _, (_, value) = _CACHE.popitem()
        _close(value)


def _close(value: Any) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # a failing close must not hide the task results
            pass


def _worker_init(initializer, initargs) -> None:
    # Worker processes leave through os._exit, which skips atexit; multiprocessing's Finalize
    # with an exit priority is run by the worker's own shutdown path, so renderers get closed
    # explicitly (an EGL context left to the GC prints "Exception ignored" tracebacks).
    from multiprocessing.util import Finalize

    Finalize(None, close_worker_cache, exitpriority=10)
    if initializer is not None:
        initializer(*initargs)


# ---------------------------------------------------------------------------------------------
# Running tasks
# ---------------------------------------------------------------------------------------------
def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _describe(exc: BaseException) -> tuple[str, str]:
    """(one-line error, full traceback). The line names where it was raised, so a report of
    "3 of 256 episodes failed" is actionable without digging through logs."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({os.path.basename(tb[-1].filename)}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
    line = f"{type(exc).__name__}: {exc}{where}"
    return line, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _call(fn: Callable, task: Any) -> tuple[Any, str | None, str | None]:
    """Run one task, turning its exception into strings (exceptions may not pickle)."""
    try:
        return fn(task), None, None
    except Exception as exc:
        line, tb = _describe(exc)
        return None, line, tb


def _advance(progress) -> None:
    if progress is not None:
        progress.advance(1)


# ---------------------------------------------------------------------------------------------
# Executors: the local pool below, or another backend with a run_tasks(fn, tasks, ...) method
# ---------------------------------------------------------------------------------------------
EXECUTORS = ("local", "ray")
_CURRENT: list = [None]  # the executor run_tasks uses when not given one; None = the local pool


def make_executor(name: str | None, address: str | None = None):
    """The executor called ``name``: None for the local pool, a RayExecutor for ``"ray"`` (which
    checks that ray is installed; ray is imported nowhere else)."""
    if name in (None, "local"):
        return None
    if name == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(address=address)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


@contextlib.contextmanager
def using_executor(executor):
    """Within the block, :func:`run_tasks` calls without ``executor=`` use ``executor``."""
    before, _CURRENT[0] = _CURRENT[0], executor
    try:
        yield executor
    finally:
        _CURRENT[0] = before


def current_executor():
    return _CURRENT[0]


def run_tasks(
    fn: Callable[[Any], Any],
    tasks: Iterable[Any],
    workers: int | None = None,
    progress: Any = None,
    description: str = "",
    initializer: Callable | None = None,
    initargs: tuple = (),
    executor: Any = None,
) -> Iterator[TaskResult]:
    """Run ``fn(task)`` for every task; yield a :class:`TaskResult` per task as each completes.

    ``progress``: ``None``, ``True`` (a rich progress bar titled ``description``), or an object
    with ``.advance(n=1)`` (e.g. the runner's ``ctx.progress(...)`` task), advanced once per task.
    ``initializer(*initargs)`` runs once in each worker (or once in-process with ``workers=1``).
    Stopping the iteration early (break, exception, Ctrl-C) cancels the tasks not yet started.
    """
    tasks = list(tasks)
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if progress is True:
        yield from _with_rich_bar(fn, tasks, workers, description, initializer, initargs, executor)
        return
    backend = make_executor(executor) if isinstance(executor, str) else executor or current_executor()
    if backend is not None:  # another backend: it schedules by its own resources, not ``workers``
        yield from backend.run_tasks(fn, tasks, progress=progress, initializer=initializer, initargs=initargs)
        return
    if workers == 1 or len(tasks) <= 1:
        yield from _run_inline(fn, tasks, progress, initializer, initargs)
    else:
        yield from _run_pool(fn, tasks, min(workers, len(tasks)), progress, initializer, initargs)


def _with_rich_bar(fn, tasks, workers, description, initializer, initargs, executor=None):
    from rich.progress import Progress

    with Progress(transient=False) as bar:
        task_id = bar.add_task(description or "tasks", total=len(tasks))

        class _Adv:
            def advance(self, n=1):
                bar.advance(task_id, n)

        yield from run_tasks(fn, tasks, workers, _Adv(), description, initializer, initargs, executor)


def _run_inline(fn, tasks, progress, initializer, initargs):
    # The cache lives exactly as long as this call, as it does in a pool's workers.
    try:
        if initializer is not None:
            initializer(*initargs)
        for i, task in enumerate(tasks):
            value, err, tb = _call(fn, task)
            _advance(progress)
            yield TaskResult(i, task, value, err, tb)
    finally:
        if not _KEEP[0]:
            close_worker_cache()


def _run_pool(fn, tasks, workers, progress, initializer, initargs):
    # At most 2 tasks per worker are in flight: results (episodes with images, tens of MB each)
    # are released as soon as the caller has consumed them instead of piling up in futures,
    # and cancelling on an early stop only has to drop a short queue.
    todo = iter(enumerate(tasks))
    pending: dict = {}
    pool = _new_pool(workers, initializer, initargs)
    try:
        _submit(pool, fn, todo, pending, 2 * workers)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = any(_is_broken(f) for f in done)
            if broken:
                # A worker died (segfault, OOM kill): the executor is unusable and fails all its
                # in-flight tasks, which are reported as errors; tasks not yet started get a new pool.
                pool.shutdown(wait=True, cancel_futures=True)
                done = set(pending)
            for fut in done:
                i, task = pending.pop(fut)
                _advance(progress)
                yield _result(fut, i, task)
            if broken:
                pool = _new_pool(workers, initializer, initargs)
            _submit(pool, fn, todo, pending, 2 * workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _is_broken(fut) -> bool:
    return not fut.cancelled() and isinstance(fut.exception(), BrokenProcessPool)


def _new_pool(workers, initializer, initargs) -> ProcessPoolExecutor:
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(initializer, initargs))


def _submit(pool, fn, todo, pending, limit) -> None:
    while len(pending) < limit:
        nxt = next(todo, None)
        if nxt is None:
            return
        i, task = nxt
        pending[pool.submit(_call, fn, task)] = (i, task)


def _result(fut, i, task) -> TaskResult:
    try:
        value, err, tb = fut.result()
    except Exception as exc:  # the worker process died, or fn/task/result did not pickle
        err, tb = _describe(exc)
        value = None
    return TaskResult(i, task, value, err, tb)
