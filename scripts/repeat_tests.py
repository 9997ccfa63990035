"""Run tests again and again under a CPU hog; print how many runs passed. A test that fails one run in N
shows up here long before it blocks someone else's change.

    MUJOCO_GL=egl .venv/bin/python scripts/repeat_tests.py -n 50            # the pool and fault tests
    .venv/bin/python scripts/repeat_tests.py -n 20 tests/test_pool.py        # any pytest selection

Each run is a fresh ``pytest -x`` process; ``--hog`` busy processes (default: one per core) compete with it
for the CPU the whole time, as a loaded machine would. Exit status 0 only when every run passed.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The worker pool's own tests and the fault tests that kill, hang and segfault pool workers.
DEFAULT_TESTS = [
    "tests/test_pool.py",
    "tests/test_faults.py::test_hung_and_segfaulting_episodes_cost_only_themselves",
    "tests/test_faults.py::test_crashing_episodes_are_counted_reported_and_retried_by_a_rerun",
    "tests/test_faults.py::test_sigterm_stops_like_ctrl_c_and_kills_the_workers",
    "tests/test_faults.py::test_kill_worker_then_second_run_then_kill_main_during_evaluation",
]


def _spin(parent: int) -> None:
    from pxp.core.execution.local import die_with_parent

    die_with_parent(parent)  # a hog must not outlive the script, however the script ends
    while True:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=50)
    ap.add_argument("--hog", type=int, default=os.cpu_count() or 1, help="busy processes beside the tests")
    ap.add_argument("tests", nargs="*", default=DEFAULT_TESTS)
    args = ap.parse_args()

    hogs = [multiprocessing.Process(target=_spin, args=(os.getpid(),), daemon=True) for _ in range(args.hog)]
    for h in hogs:
        h.start()
    passed, failures = 0, []
    try:
        for k in range(1, args.runs + 1):
            t0 = time.monotonic()
            res = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args.tests],
                                 cwd=ROOT, capture_output=True, text=True, env={**os.environ, "MUJOCO_GL": "egl"})
            ok = res.returncode == 0
            passed += ok
            if not ok:
                failures.append((k, (res.stdout + res.stderr)[-4000:]))
            why = [line for line in res.stdout.splitlines() if line.startswith(("FAILED", "ERROR", "E  "))][:12]
            print(f"run {k}/{args.runs}: {'pass' if ok else 'FAIL'} ({time.monotonic() - t0:.0f} s)"
                  + "".join(f"\n  {line[:300]}" for line in why), flush=True)
    finally:
        for h in hogs:
            h.kill()
    for k, tail in failures:
        print(f"\n--- run {k} failed:\n{tail}")
    print(f"{passed}/{args.runs} runs passed ({args.hog} hog process(es); tests: {' '.join(args.tests)})")
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
