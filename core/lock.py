"""One process at a time per run directory: an OS lock (``flock``) on ``<run_dir>/.lock``.

The kernel drops the lock when the holding process exits, however it exits (kill -9, OOM), so a
stale lock never blocks: the file stays behind but nobody holds it. The file's content names the
holder (pid, command line, start time) so that a refused second run can say who holds it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path

from .errors import PxpError
from .rundir import RunDir


class RunLocked(PxpError):
    """Another live process holds the run directory's lock (an input error: exit 2)."""

    exit_code = 2


@contextlib.contextmanager
def run_lock(run_dir: Path | str):
    """Hold ``run_dir``'s lock for the block; raise :class:`RunLocked` at once if another process has it."""
    path = RunDir(run_dir).lock
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{run_dir} is in use by {_holder(path)}; wait for it to finish or stop it "
                            f"(the lock is released when that process exits)") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return "another process"
    return f"pid {info.get('pid')} ({info.get('command') or '?'}, started {info.get('started') or '?'})"
