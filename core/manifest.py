"""manifest.json: what produced a run (versions, plugins, commit, device, seeds, weights)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import io
from .errors import PxpError
from .plugin_code import plugin_code
from .rundir import RunDir

LIBRARIES = ("numpy", "h5py", "pydantic", "pluggy")  # the framework's own; plugins name theirs


def library_names(registry=None) -> list[str]:
    """The plugins' libraries (hook ``pxp_library_names``, in hook order), then the framework's."""
    from .plugins import get_registry

    manager = getattr(registry if registry is not None else get_registry(), "manager", None)
    named = manager.hook.pxp_library_names() if manager is not None else []
    return list(dict.fromkeys([n for names in named for n in names] + list(LIBRARIES)))


def library_versions(registry=None) -> dict[str, str | None]:
    out = {}
    for name in library_names(registry):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def cpu() -> str:
    """The CPU's model name and the cores this process may use: wall-clock training budgets reach a
    different number of steps on another machine, so a run says which one it ran on."""
    model = platform.processor() or platform.machine()
    try:
        names = [l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                 if l.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def git_commit(path: Path) -> str | None:
    try:
        res = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return res.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def write(run_dir: Path, spec, registry, *, device: str, units: dict | None = None, drift: dict | None = None) -> Path:
    """``drift``: this run's drift preflight (:mod:`pxp.core.doctor`); None keeps the one recorded before."""
    from pxp import __version__

    path = RunDir(run_dir).manifest
    previous = io.read_json(path, {}) or {}
    source_dir = Path(__file__).resolve().parent.parent
    data = {
        "pxp": __version__,
        "spec": spec.name,
        "created": previous.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu(),
        "device": device,
        "seed": spec.seed,
        "smoke": bool(getattr(spec, "smoke", False)),
        "git_commit": {"pxp": git_commit(source_dir), "cwd": git_commit(Path.cwd())},
        "libraries": library_versions(registry),
        "plugins": [plugin_code(registry, p.name) for p in registry.plugins],  # + source hash from a working tree
        "plugin_failures": [f.__dict__ for f in registry.failures],
        "units": units if units is not None else previous.get("units", {}),
        "drift": drift if drift is not None else previous.get("drift"),
    }
    io.write_json(path, data)
    return path


def check_smoke(run_dir: Path, smoke: bool) -> None:
    """A directory holds a smoke run or a real one, never both: refuse to mix them."""
    previous = io.read_json(RunDir(run_dir).manifest, {}) or {}
    if previous and bool(previous.get("smoke", False)) != bool(smoke):
        was, now = ("a smoke run", "a real run") if previous.get("smoke") else ("a real run", "a smoke run")
        raise PxpError(f"{run_dir} holds {was}; {now} needs its own directory (pick another --out)")
