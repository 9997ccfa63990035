"""Where tasks run: the local process pool (:mod:`pxp.core.pool`) or another backend by name."""
from __future__ import annotations

EXECUTORS = ("local", "ray")


def make_executor(name: str | None, address: str | None = None):
    """The executor called ``name``: None for the local pool, a RayExecutor for ``"ray"`` (which
    checks that ray is installed; ray is imported nowhere else)."""
    if name in (None, "local"):
        return None
    if name == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(address=address)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
