"""The local executor: a pool of worker processes on this machine (or this process, with one worker).

    for r in LocalExecutor().run_tasks(fn, tasks, workers=4, progress=bar, timeout=300, retries=2, setup_timeout=600):
        if r.error: ...            # the task raised, hung or kept killing its worker; the others went on
        else: write(r.value)       # results arrive as they complete: write incrementally

- ``fn`` runs as ``fn(task)`` in a worker process. With the spawn start method (used so that
  workers never inherit a half-initialised EGL/MuJoCo context or torch threads) ``fn`` and every
  task must be picklable, i.e. ``fn`` is a module-level function.
- ``workers=None`` → one per available core; ``workers=1`` → runs in this process, no pool, so
  tests and debuggers see plain stack frames (no time limit and no retries there: nothing to kill).
- Expensive per-process state (a scene with its renderer, ~2 GB) lives in :func:`worker_cache`:
  created lazily by the first task that needs it, reused by the following ones, and closed when
  the :func:`run_tasks` call ends (in-process) or when the worker process exits.

Failure semantics (a backend that replaces this one keeps them):

- A task that **raises** comes back with ``error`` set ("ExcType: message (file:line in func)"); it is
  not retried (the same input would raise again); the caller decides (evaluation: not cached as done,
  so a rerun retries exactly those).
- A **worker that dies** (segfault, OOM kill, ``os._exit``) is an infrastructure failure. The tasks that
  were in flight on the pool are requeued, not failed; they then run one at a time, so the task that
  kills its worker is known exactly and retried up to ``retries`` times before it comes back with the
  error "worker process died …". Innocent tasks never use up retries.
- ``timeout`` (seconds per task): a task's clock starts when it calls :func:`start_clock` in the worker
  (after its one-time setup, e.g. building the cached scene), or when it is handed to a worker if it
  never calls it; before that call it may take ``setup_timeout`` seconds (default: ``timeout``), so a
  slow worker start-up under load is not taken for a hang. A task past its limit comes back with the error
  "timed out after N s" (not run again: a hang usually repeats). No new task starts on that pool; the
  other in-flight tasks finish (or hang past their own limits), then its workers are killed and a new pool
  takes over: tasks that hang together cost one time limit, not one each.
- Workers die with the parent, however the parent dies (``PR_SET_PDEATHSIG`` on Linux, plus a thread
  that watches the parent pid); they ignore SIGINT, so a Ctrl-C is handled once, by the parent, which
  kills its workers when the iteration stops early (break, exception, Ctrl-C, SIGTERM turned into
  KeyboardInterrupt by the CLI) instead of waiting for their tasks to end.
- At most ``workers`` tasks are in flight, so handing a task over is starting it (the deadline is
  meaningful) and results are consumed as they come instead of piling up in futures.
"""
from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from .base import Executor, TaskResult

DEFAULT_RETRIES = 2  # runs again of a task whose worker died


class LocalExecutor(Executor):
    """This machine's cores: see the module docstring."""

    name = "local"

    def run_tasks(self, fn, tasks, *, workers=None, progress=None, initializer=None, initargs=(), timeout=None,
                  retries=None, setup_timeout=None, skip=None, resources=None) -> Iterator[TaskResult]:
        """``resources`` is not used: a task may use the whole machine, ``workers`` sets how many run at once."""
        return run_tasks(fn, tasks, workers, progress, "", initializer, initargs, timeout,
                         DEFAULT_RETRIES if retries is None else retries, setup_timeout, skip)


# ---------------------------------------------------------------------------------------------
# Per-process cache
# ---------------------------------------------------------------------------------------------
# slot → (key, value). One entry per slot bounds memory: asking a slot for a new key (another
# scene config) closes the previous value first, so a worker never holds two 2 GB scenes.
_CACHE: dict[str, tuple[Any, Any]] = {}
_CLOCK: Any = None  # in a pool worker: the queue start_clock() reports to
_CURRENT: int | None = None  # in a pool worker: the index of the task being run


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


def start_clock() -> None:
    """Called by a task when its one-time setup is done: its time limit counts from now (see
    ``run_tasks(timeout=…)``). A no-op in-process or without a time limit."""
    if _CLOCK is not None and _CURRENT is not None:
        _CLOCK.put(_CURRENT)


def _worker_init(parent_pid, clock, initializer, initargs) -> None:
    # Worker processes leave through os._exit, which skips atexit; multiprocessing's Finalize
    # with an exit priority is run by the worker's own shutdown path, so renderers get closed
    # explicitly (an EGL context left to the GC prints "Exception ignored" tracebacks).
    from multiprocessing.util import Finalize

    Finalize(None, close_worker_cache, exitpriority=10)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it kills us
    global _CLOCK
    _CLOCK = clock
    die_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


def die_with_parent(parent_pid: int) -> None:
    """Make this process die when ``parent_pid`` does, whatever kills it (kill -9, OOM, SIGTERM)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):  # no prctl here: the watchdog thread below still works
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="pxp-parent-watchdog", daemon=True).start()


def _watch_parent(parent_pid: int, every: float = 1.0) -> None:
    while True:
        time.sleep(every)
        if os.getppid() != parent_pid:  # reparented: the parent is gone
            os.kill(os.getpid(), signal.SIGKILL)


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


def _call(fn: Callable, task: Any, index: int | None = None) -> tuple[Any, str | None, str | None]:
    """Run one task, turning its exception into strings (exceptions may not pickle)."""
    global _CURRENT
    _CURRENT = index
    try:
        return fn(task), None, None
    except Exception as exc:
        line, tb = _describe(exc)
        return None, line, tb


def _call_inline(fn, i: int, task) -> TaskResult:
    global _CURRENT
    _CURRENT = None
    try:
        return TaskResult(i, task, fn(task))
    except Exception as exc:  # kept whole too: a caller in this process may re-raise it as it was
        line, tb = _describe(exc)
        return TaskResult(i, task, None, line, tb, exception=exc)


def _advance(progress) -> None:
    if progress is not None:
        progress.advance(1)


def run_tasks(
    fn: Callable[[Any], Any],
    tasks: Iterable[Any],
    workers: int | None = None,
    progress: Any = None,
    description: str = "",
    initializer: Callable | None = None,
    initargs: tuple = (),
    timeout: float | None = None,
    retries: int = DEFAULT_RETRIES,
    setup_timeout: float | None = None,
    skip: Callable[[Any], str | None] | None = None,
) -> Iterator[TaskResult]:
    """Run ``fn(task)`` for every task; yield a :class:`TaskResult` per task as each completes.

    ``progress``: ``None``, ``True`` (a rich progress bar titled ``description``), or an object
    with ``.advance(n=1)`` (e.g. the runner's ``ctx.progress(...)`` task), advanced once per task.
    ``initializer(*initargs)`` runs once in each worker (or once in-process with ``workers=1``).
    ``timeout``: seconds a task may run in a worker; ``retries``: how often a task whose worker died is
    run again (see the module docstring). Stopping the iteration early (break, exception, Ctrl-C)
    kills the workers and drops the tasks not yet finished. ``skip(task)``, asked just before a task
    would start, withdraws it: a reason (str) makes it come back unrun, ``skipped`` with that ``error``.
    """
    tasks = list(tasks)
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if progress is True:
        yield from _with_rich_bar(fn, tasks, workers, description, initializer, initargs, timeout, retries,
                                  setup_timeout, skip)
        return
    if workers == 1 or not tasks:
        yield from _run_inline(fn, tasks, progress, initializer, initargs, skip)
    else:
        limits = _Limits(timeout, max(0, int(retries)), setup_timeout if setup_timeout is not None else timeout)
        yield from _run_pool(fn, tasks, min(workers, len(tasks)), progress, initializer, initargs, limits, skip)


def _with_rich_bar(fn, tasks, workers, description, initializer, initargs, timeout, retries, setup_timeout,
                   skip=None):
    from rich.progress import Progress

    with Progress(transient=False) as bar:
        task_id = bar.add_task(description or "tasks", total=len(tasks))

        class _Adv:
            def advance(self, n=1):
                bar.advance(task_id, n)

        yield from run_tasks(fn, tasks, workers, _Adv(), description, initializer, initargs, timeout, retries,
                             setup_timeout, skip)


def _skipped(skip, i, task) -> TaskResult | None:
    reason = skip(task) if skip is not None else None
    return None if reason is None else TaskResult(i, task, None, reason, skipped=True)


def _run_inline(fn, tasks, progress, initializer, initargs, skip=None):
    # The cache lives exactly as long as this call, as it does in a pool's workers.
    try:
        if initializer is not None:
            initializer(*initargs)
        for i, task in enumerate(tasks):
            result = _skipped(skip, i, task) or _call_inline(fn, i, task)
            _advance(progress)
            yield result
    finally:
        if not _KEEP[0]:
            close_worker_cache()


@dataclass
class _Limits:
    timeout: float | None
    retries: int
    setup_timeout: float | None


class _Pool:
    """One ProcessPoolExecutor and the tasks in flight on it: future → (index, task, deadline)."""

    def __init__(self, workers, initializer, initargs):
        ctx = multiprocessing.get_context("spawn")
        self.clock = ctx.SimpleQueue()  # task indices whose start_clock() was called
        self.executor = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                            initargs=(os.getpid(), self.clock, initializer, initargs))
        self.pending: dict = {}
        self.procs: dict = {}  # pid → Process, every worker this pool started
        self.hung = 0  # tasks past their limit, still occupying a worker: the pool takes no new task

    def submit(self, fn, i, task, limits) -> None:
        deadline = None if limits.timeout is None else time.monotonic() + limits.setup_timeout
        self.pending[self.executor.submit(_call, fn, task, i)] = (i, task, deadline)
        self.procs.update(getattr(self.executor, "_processes", None) or {})  # the executor forgets dead ones

    def restart_clocks(self, timeout) -> None:
        while timeout is not None and not self.clock.empty():
            started = self.clock.get()
            for fut, (i, task, _) in list(self.pending.items()):
                if i == started:
                    self.pending[fut] = (i, task, time.monotonic() + timeout)

    def wait(self):
        deadlines = [d for _, _, d in self.pending.values() if d is not None]
        left = None if not deadlines else max(0.0, min(deadlines) - time.monotonic())
        # wake at least once a second: a signal handler (SIGTERM) then runs promptly
        done, _ = wait(self.pending, timeout=1.0 if left is None else min(left, 1.0), return_when=FIRST_COMPLETED)
        return done

    def expired(self) -> list:
        now = time.monotonic()
        return [f for f, (_, _, d) in self.pending.items() if d is not None and now >= d and not f.done()]

    def exit_codes(self) -> list:
        """The workers' exit codes once the pool broke. The executor's management thread reaps them
        (terminate_broken joins every worker); a second reaper here would race it: the waitpid that loses
        gets ECHILD, and the code could be read before the winner records it ("unknown cause"). So the
        codes are read after that thread has finished, when they are all recorded."""
        manager = getattr(self.executor, "_executor_manager_thread", None)
        if manager is not None:
            manager.join(timeout=30)
        for p in self.procs.values():
            p.join(timeout=5)  # no other reaper is left: this only waits for a worker the executor forgot
        codes = [p.exitcode for p in self.procs.values() if p.exitcode not in (None, 0)]
        return [c for c in codes if c != -signal.SIGTERM] or codes  # the executor SIGTERMs the survivors

    def kill(self) -> None:
        """Kill the workers now (a hung task never returns by itself) and drop the executor."""
        procs = list({**self.procs, **(getattr(self.executor, "_processes", None) or {})}.values())
        for p in procs:
            if p.exitcode is None:
                p.kill()
        self.executor.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.join(timeout=5)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def _run_pool(fn, tasks, workers, progress, initializer, initargs, limits: _Limits, skip=None):
    queue = collections.deque(enumerate(tasks))  # (index, task) not yet handed to a worker
    suspects: collections.deque = collections.deque()  # in flight when a pool broke: rerun one at a time
    deaths: dict[int, int] = {}  # index → times its worker died under it (alone, so it is the cause)
    pool = _Pool(workers, initializer, initargs)
    finished = False
    try:
        while queue or suspects or pool.pending:
            if pool.hung and not pool.pending:  # only hung tasks are left on it: replace it
                pool.kill()
                pool = _Pool(workers, initializer, initargs)
            for r in _fill(pool, fn, queue, suspects, workers, limits, skip):
                _advance(progress)
                yield r
            if not pool.pending:
                continue  # everything left was skipped
            done = pool.wait()
            pool.restart_clocks(limits.timeout)
            broken = [f for f in done if _is_broken(f)]
            for fut in [f for f in done if not _is_broken(f)]:
                i, task, _ = pool.pending.pop(fut)
                _advance(progress)
                yield _result(fut, i, task)
            if broken:
                for fut in [f for f in pool.pending if f.done() and not _is_broken(f)]:
                    i, task, _ = pool.pending.pop(fut)  # finished before the worker died: keep it
                    _advance(progress)
                    yield _result(fut, i, task)
                in_flight = [(i, t) for i, t, _ in pool.pending.values()]
                codes = pool.exit_codes()
                pool.kill()
                pool = _Pool(workers, initializer, initargs)
                for r in _after_death(in_flight, codes, suspects, deaths, limits.retries):
                    _advance(progress)
                    yield r
                continue
            for fut in pool.expired():
                i, task, _ = pool.pending.pop(fut)
                pool.hung += 1
                _advance(progress)
                yield TaskResult(i, task, None, f"timed out after {limits.timeout:g} s (the worker was killed)")
        finished = True
    finally:
        if finished and not pool.hung:
            pool.close()
        else:  # break, exception, Ctrl-C: do not wait for running tasks (one may hang)
            pool.kill()


def _fill(pool, fn, queue, suspects, workers, limits, skip) -> list[TaskResult]:
    """Hand tasks to free workers; returns the ones ``skip`` withdrew instead."""
    if pool.hung:  # the pool is to be replaced once its other tasks are done
        return []
    if suspects:  # one suspect alone on the pool: if the pool breaks now, it is the cause
        if not pool.pending:
            i, task = suspects.popleft()
            pool.submit(fn, i, task, limits)
        return []
    skipped = []
    while queue and len(pool.pending) < workers:
        i, task = queue.popleft()
        result = _skipped(skip, i, task)
        if result is None:
            pool.submit(fn, i, task, limits)
        else:
            skipped.append(result)
    return skipped


def _after_death(in_flight, codes, suspects, deaths, retries) -> list[TaskResult]:
    """A worker died with ``in_flight`` tasks on the pool: requeue them, or fail the known cause."""
    if len(in_flight) != 1:
        suspects.extend(in_flight)  # cause unknown: each runs alone next, charged nothing
        return []
    i, task = in_flight[0]
    deaths[i] = deaths.get(i, 0) + 1
    if deaths[i] <= retries:
        suspects.append((i, task))
        return []
    how = ", ".join(_exit_text(c) for c in codes) or "unknown cause"
    return [TaskResult(i, task, None, f"worker process died ({how}) running this task, {deaths[i]} time(s)")]


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _is_broken(fut) -> bool:
    return not fut.cancelled() and isinstance(fut.exception(), BrokenProcessPool)


def _result(fut, i, task) -> TaskResult:
    try:
        value, err, tb = fut.result()
    except Exception as exc:  # fn, the task or its result did not pickle
        err, tb = _describe(exc)
        value = None
    return TaskResult(i, task, value, err, tb)
