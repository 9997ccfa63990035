"""The shared worker pool: real spawn processes, errors isolated, per-worker cache reused and closed."""
import os
import signal
import time
from pathlib import Path

import pytest

from pxp.core.execution import TaskResult, close_worker_cache, run_tasks, worker_cache


# Task functions live at module level: spawn workers import them by name.
def square(x):
    if x == 3:
        raise ValueError("three is not allowed")
    return x * x


class Closable:
    def __init__(self, marker_dir):
        self.marker_dir = Path(marker_dir)
        self.closed = False

    def close(self):
        self.closed = True
        (self.marker_dir / f"closed-{os.getpid()}-{id(self)}").touch()


def cached_pid(task):
    marker_dir, _ = task
    obj = worker_cache(("scene", marker_dir), lambda: Closable(marker_dir))
    (Path(marker_dir) / f"made-{os.getpid()}-{id(obj)}").touch(exist_ok=True)
    time.sleep(0.05)  # long enough that both workers get tasks
    return os.getpid(), id(obj)


def crash_on_zero(x):
    if x == 0:
        time.sleep(0.2)
        os._exit(3)  # a segfaulting simulator, as the pool sees it
    time.sleep(0.3)
    return x


class Counter:
    def __init__(self):
        self.n = 0

    def advance(self, n=1):
        self.n += n


@pytest.mark.parametrize("workers", [1, 2])
def test_results_errors_and_progress(workers):
    progress = Counter()
    results = list(run_tasks(square, range(6), workers=workers, progress=progress))
    assert sorted(r.index for r in results) == list(range(6))
    by_index = {r.index: r for r in results}
    assert all(isinstance(r, TaskResult) for r in results)
    assert [by_index[i].value for i in (0, 1, 2, 4, 5)] == [0, 1, 4, 16, 25]
    bad = by_index[3]
    assert not bad.ok and bad.value is None
    # the one-line error names the exception and where it was raised
    assert bad.error.startswith("ValueError: three is not allowed (test_pool.py:")
    assert "in square" in bad.error and "Traceback" in bad.traceback
    assert progress.n == 6


def test_inline_runs_in_this_process_in_order():
    results = list(run_tasks(_pid, [0, 1, 2], workers=1))
    assert [r.index for r in results] == [0, 1, 2]
    assert {r.value for r in results} == {os.getpid()}


def _pid(_):
    return os.getpid()


def test_pool_uses_other_processes():
    results = list(run_tasks(_pid, range(4), workers=2))
    pids = {r.value for r in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_cache_built_once_per_process_and_closed(tmp_path, workers):
    results = list(run_tasks(cached_pid, [(str(tmp_path), i) for i in range(6)], workers=workers))
    assert all(r.ok for r in results), [r.error for r in results]
    made = {p.name for p in tmp_path.glob("made-*")}
    pids = {pid for pid, _ in (r.value for r in results)}
    # one cached object per process, reused by all of that process's tasks
    assert len(made) == len(pids)
    assert len({r.value for r in results}) == len(pids)
    # ...and closed by the time run_tasks returns (worker exit or end of the inline call)
    closed = {p.name.replace("closed-", "made-") for p in tmp_path.glob("closed-*")}
    assert closed == made


def test_cache_slot_replaces_and_closes_old_value(tmp_path):
    a = worker_cache("a", lambda: Closable(tmp_path))
    assert worker_cache("a", lambda: pytest.fail("rebuilt")) is a
    b = worker_cache("b", lambda: Closable(tmp_path))
    assert a.closed and not b.closed  # one value per slot: memory stays bounded
    close_worker_cache()
    assert b.closed


def test_dead_worker_fails_only_its_task_after_retries():
    results = list(run_tasks(crash_on_zero, range(8), workers=2, retries=1))
    assert sorted(r.index for r in results) == list(range(8))
    by_index = {r.index: r for r in results}
    # the tasks that shared the pool with the crash are requeued, not failed; the cause is found
    # by running the suspects alone and is retried once before it is reported
    assert by_index[0].error == "worker process died (exit code 3) running this task, 2 time(s)"
    assert all(r.ok and r.value == r.index for r in results if r.index)


def segfault(_):
    os.kill(os.getpid(), signal.SIGSEGV)


def test_a_dead_workers_signal_is_known_whichever_thread_reaps_it(monkeypatch):
    """Two threads reap a dead worker: the executor's management thread and the pool's. Here the other
    thread always wins the waitpid and is slow to record the code (as under load, waiting for the GIL);
    the code must still be known, not "unknown cause"."""
    import threading
    from multiprocessing import popen_fork

    def poll(self, flag=os.WNOHANG):
        main = threading.current_thread() is threading.main_thread()
        if self.returncode is None:
            if main:
                time.sleep(0.1)  # lose the race for waitpid
            try:
                pid, status = os.waitpid(self.pid, flag)
            except OSError:  # ECHILD: reaped by the other thread, which has not recorded it yet
                return None
            if pid == self.pid:
                if not main:
                    time.sleep(0.5)  # the winner records the code late
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    monkeypatch.setattr(popen_fork.Popen, "poll", poll)
    for _ in range(2):
        (r,) = run_tasks(segfault, [0], workers=2, retries=0)
        assert r.error == "worker process died (signal SIGSEGV) running this task, 1 time(s)"


def mark_and_nap(task):
    marker_dir, x = task
    (Path(marker_dir) / f"ran-{x}").touch()
    time.sleep(0.3)
    return x


def test_early_stop_cancels_the_rest(tmp_path):
    for r in run_tasks(mark_and_nap, [(str(tmp_path), x) for x in range(40)], workers=2):
        break  # the generator closes here: the workers are killed, the other tasks dropped
    started = len(list(tmp_path.glob("ran-*")))
    time.sleep(1.0)  # a worker still alive would start more tasks meanwhile
    assert len(list(tmp_path.glob("ran-*"))) == started < 40


def test_rejects_bad_worker_count():
    with pytest.raises(ValueError):
        list(run_tasks(square, [1], workers=0))


# ---------------------------------------------------------------- time limits, parent death, Ctrl-C (issue 15)

def hang_on_one(x):
    from pxp.core.execution import start_clock

    start_clock()  # the 2-s limit counts from here, not from a worker's start-up (seconds on a loaded machine)
    if x == 1:
        time.sleep(3600)
    time.sleep(0.2)
    return x


def slow_setup_then_quick(x):
    from pxp.core.execution import start_clock

    time.sleep(4.0)  # one-time setup (a scene being built): not part of the time limit
    start_clock()
    time.sleep(0.1)
    return x


def test_hung_task_times_out_and_the_others_are_requeued_not_failed():
    t0 = time.monotonic()
    results = {r.index: r for r in run_tasks(hang_on_one, range(6), workers=2, timeout=2, setup_timeout=120)}
    assert time.monotonic() - t0 < 120  # the hour-long task did not hold the call
    assert results[1].error == "timed out after 2 s (the worker was killed)"
    assert all(results[i].ok and results[i].value == i for i in (0, 2, 3, 4, 5))


def test_time_limit_counts_from_start_clock():
    results = list(run_tasks(slow_setup_then_quick, range(2), workers=2, timeout=3, setup_timeout=120))
    assert all(r.ok for r in results), [r.error for r in results]


def hang_or_set_up_then_work(task):
    from pxp.core.execution import start_clock

    marker_dir, x = task
    (Path(marker_dir) / f"run-{x}-{os.getpid()}-{time.monotonic_ns()}").touch()
    if x == "hang":
        start_clock()
        time.sleep(3600)
    time.sleep(3.0)  # set-up (a scene being built): before its clock starts
    start_clock()
    time.sleep(2.0)  # set-up and work outlast the hung task's 4-s limit; the work alone is well within its own
    return x


def test_a_task_running_beside_a_hung_one_finishes_instead_of_starting_over(tmp_path):
    results = {r.task[1]: r for r in run_tasks(hang_or_set_up_then_work, [(str(tmp_path), "hang"), (str(tmp_path), "a"),
                                                                         (str(tmp_path), "b")], workers=2, timeout=4,
                                                 setup_timeout=120)}
    assert results["hang"].error == "timed out after 4 s (the worker was killed)"
    assert results["a"].ok and results["b"].ok, [results[k].error for k in "ab"]
    runs = sorted(p.name.split("-")[1] for p in tmp_path.glob("run-*"))
    assert runs == ["a", "b", "hang"]  # each ran once: "a" was not killed and requeued with the hung task


PARENT = """
import os, sys, time
from pxp.core.execution import run_tasks
from tests.test_pool import report_pid_and_hang
for r in run_tasks(report_pid_and_hang, [sys.argv[1]] * 2, workers=2):
    pass
"""


def report_pid_and_hang(marker_dir):
    (Path(marker_dir) / str(os.getpid())).touch()
    time.sleep(3600)


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for_workers(tmp_path, n=2, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pids = [int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()]
        if len(pids) >= n:
            return pids
        time.sleep(0.1)
    raise AssertionError("workers did not start")


def _as_from_a_terminal() -> None:
    """The parent starts with SIGINT at its default and unblocked, as a command started from a shell
    does. A child inherits ignored and blocked signals, and in the full suite an earlier test leaves the
    pytest worker's SIGINT in a state that made the parent ignore Ctrl-C (seen only under xdist, never
    alone; the failure message prints that state)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _gone_within(pids, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_workers_die_with_their_parent_however_it_stops(tmp_path, sig):
    """kill -9 (PR_SET_PDEATHSIG), Ctrl-C (the parent kills its workers) and SIGTERM (default action)."""
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)], cwd=Path(__file__).resolve().parents[1],
                              stderr=subprocess.DEVNULL, preexec_fn=_as_from_a_terminal)
    inherited = (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []))
    try:
        pids = _wait_for_workers(tmp_path)
        parent.send_signal(sig)
        try:
            parent.wait(timeout=30)  # nothing waits for the hung tasks (30 s: the machine may be very busy)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the parent ignored {sig.name} (this process: SIGINT handler, blocked signals "
                                 f"= {inherited})") from None
        assert _gone_within(pids, 10), f"workers {pids} outlived their parent ({sig.name})"
    finally:
        if parent.poll() is None:
            parent.kill()
