"""Drift checks: does this machine reproduce the physics and pixels a plugin's references were made with?

Plugins return checks (:class:`pxp.core.contracts.DriftCheck`) from the hook ``pxp_drift_checks``.
``pxp doctor`` runs every check in full; every ``pxp run`` that simulates runs the quick form of the
checks that guard its spec's scene (:func:`preflight`), records the result in the manifest, and the
report shows a banner when one fails. A quick result is kept per environment (the check's
``environment()`` and this host), so a machine is checked once, not on every run; ``PXP_PREFLIGHT=0``
turns the preflight off. A check that fails to load or raises is a failed check named by its plugin.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from . import io

BANNER = "Drift check failed"


def drift_checks(registry) -> list[tuple[str, object]]:
    """(plugin name, check) pairs; a plugin whose hook raises gives a check that reports the error."""
    out = []
    manager = getattr(registry, "manager", None)
    for impl in manager.hook.pxp_drift_checks.get_hookimpls() if manager is not None else []:
        try:
            out += [(impl.plugin_name, check) for check in impl.function() or ()]
        except Exception as exc:
            out.append((impl.plugin_name, _Broken(impl.plugin_name, exc)))
    return out


class _Broken:
    """Stands for the checks of a plugin whose ``pxp_drift_checks`` raised: they fail, naming it."""

    scene = None

    def __init__(self, plugin: str, exc: Exception):
        self.name, self._error = plugin, f"{type(exc).__name__}: {exc}".splitlines()[0]

    def environment(self) -> dict:
        return {}

    def run(self, quick: bool = False) -> dict:
        return {"failures": [f"plugin {self.name!r} failed to give its drift checks: {self._error}"], "notes": []}


def run_checks(registry, quick: bool = False, scene: str | None = None) -> dict:
    """Run the checks (only those guarding ``scene``, when given); ``ok`` when none fails."""
    results = [run_check(plugin, check, quick) for plugin, check in drift_checks(registry)
               if scene is None or getattr(check, "scene", None) in (None, scene)]
    return {"ok": all(r["ok"] for r in results), "quick": quick, "checked": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(), "checks": results}


def run_check(plugin: str, check, quick: bool) -> dict:
    t0 = time.time()
    try:
        out = dict(check.run(quick=quick))
    except Exception as exc:  # a check that breaks is a failed check, named; the others still run
        out = {"failures": [f"the check raised {type(exc).__name__}: {exc}".splitlines()[0]], "notes": []}
    out.setdefault("notes", [])
    failures = list(out.pop("failures", []))
    return {"name": getattr(check, "name", plugin), "plugin": plugin, "ok": not failures, "failures": failures,
            **out, "seconds": round(time.time() - t0, 2)}


def preflight(registry, scene: str, log=print) -> dict | None:
    """The quick checks of ``scene``, reused while this host's environment for them is unchanged.
    Returns the result recorded in the manifest (None when turned off or no check guards the scene)."""
    if os.environ.get("PXP_PREFLIGHT", "").strip().lower() in {"0", "off", "false", "no"}:
        return None
    checks = [(p, c) for p, c in drift_checks(registry) if getattr(c, "scene", None) in (None, scene)]
    if not checks:
        return None
    key = io.config_hash(platform.node(), scene, [(p, getattr(c, "name", p), _environment(c)) for p, c in checks])
    cached = io.read_json(_cache_dir() / f"{key}.json")
    if isinstance(cached, dict) and "ok" in cached:
        result = {**cached, "cached": True}
    else:
        result = {"ok": True, "quick": True, "checked": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(),
                  "checks": [run_check(p, c, quick=True) for p, c in checks]}
        result["ok"] = all(r["ok"] for r in result["checks"])
        io.write_json(_cache_dir() / f"{key}.json", result)
    if not result["ok"]:
        log(f"[bold red]{BANNER}[/bold red]: {summary(result)}; the report says so; `pxp doctor` checks in full")
    return result


def summary(result: dict) -> str:
    """One line: what failed, and how this machine differs from where the references were made."""
    failed = [r for r in result.get("checks", []) if not r["ok"]]
    parts = [f"{r['name']}: " + "; ".join(r["failures"] + [f"note: {n}" for n in r.get("notes", [])]) for r in failed]
    return " | ".join(parts) if parts else "every check passed"


def _environment(check) -> dict:
    try:
        return dict(check.environment())
    except Exception as exc:  # never reuse a result whose environment cannot be told
        return {"unknown": f"{time.time()} {type(exc).__name__}"}


def _cache_dir() -> Path:
    """$PXP_CACHE_DIR/doctor, else $XDG_CACHE_HOME/pxp/doctor, else ~/.cache/pxp/doctor."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(os.environ.get("PXP_CACHE_DIR") or os.path.join(xdg, "pxp")) / "doctor"
