import os

# The suite runs plugins strict: a plugin that fails to load is a test failure, not a warning.
os.environ.setdefault("PXP_STRICT_PLUGINS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


import signal  # noqa: E402

import pytest  # noqa: E402


def _sigint_state():
    """Python's SIGINT handler, this thread's blocked signals, and whether the kernel has SIGINT ignored (a C
    library can set that behind Python's back; children inherit it across exec)."""
    try:
        status = dict(line.split(":", 1) for line in open("/proc/thread-self/status").read().splitlines())
        ignored = bool(int(status["SigIgn"], 16) & (1 << (signal.SIGINT - 1)))
    except (OSError, KeyError, ValueError):
        ignored = None
    return signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []), ignored


@pytest.fixture(autouse=True)
def _leaves_sigint_as_it_found_it(request):
    """A test that leaves SIGINT ignored or blocked in this process breaks every later test whose
    subprocess expects Ctrl-C to work (children inherit both): name it here, where it happens."""
    before = _sigint_state()
    yield
    after = _sigint_state()
    if after != before:
        signal.pthread_sigmask(signal.SIG_SETMASK, before[1])
        signal.signal(signal.SIGINT, before[0])
        pytest.fail(f"{request.node.nodeid} changed this process's SIGINT (handler, blocked, ignored) from {before} "
                    f"to {after}", pytrace=False)


@pytest.fixture
def toy_registry():
    """A registry of the toy plugins only (tests/core_plugins.py), set as the current one for the test."""
    from pxp.core.plugins import load_registry, set_registry
    from tests import core_plugins

    reg = load_registry(strict=True, extra_plugins=[("toy", core_plugins.ToyPlugin())], use_entry_points=False)
    set_registry(reg)
    core_plugins.CALLS.clear()
    yield reg
    set_registry(None)
